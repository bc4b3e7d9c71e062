import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Interception, Page } from '../../shared/interception';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { devKey, exited, type Served, serve } from '../helpers/served-bridge';

/** The documented promise: a finished response's record is durable within this window. */
const FLUSH_WINDOW_MS = 250;

function message(url: string, key: string, stream = false, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({
      model: 'claude-sonnet-4-5',
      max_tokens: 16,
      stream,
      messages: [{ role: 'user', content: 'durable?' }],
    }),
    ...(signal ? { signal } : {}),
  });
}

async function count(s: Served): Promise<Interception[]> {
  const all: Interception[] = [];
  let cursor: string | null = null;
  do {
    const q: string = cursor ? `&cursor=${cursor}` : '';
    const page = (await (
      await fetch(`${s.url}/api/v1/interceptions?limit=500${q}`, {
        headers: { authorization: `Bearer ${s.adminKey}` },
      })
    ).json()) as Page<Interception>;
    all.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return all;
}

describe('durability of the audit trail', function () {
  this.timeout(120_000);
  let mock: AnthropicMock;
  before(async () => {
    mock = await new AnthropicMock().start();
  });
  after(() => mock.stop());

  it('kill -9 one flush window after 100 answers, with 50 streams open: the 100 are there, the open ones are not half-written', async () => {
    const dir = await tempDir('aibridge-kill9-');
    const first = await serve(dir, mock.url);
    const key = await devKey(first);
    for (let i = 0; i < 100; i += 10) {
      const batch = await Promise.all(Array.from({ length: 10 }, () => message(first.url, key)));
      for (const r of batch) {
        assert.equal(r.status, 200);
        await r.text();
      }
    }
    // 50 streams that the upstream holds open.
    const gate = new Promise<void>(() => undefined);
    for (let i = 0; i < 50; i++) mock.next({ kind: 'gated', gate });
    const aborts = new AbortController();
    const open = await Promise.all(
      Array.from({ length: 50 }, () => message(first.url, key, true, aborts.signal)),
    );
    assert.ok(open.every((r) => r.status === 200));
    // Real time is the point: the kill lands one flush window after the answers, in a child process.
    await new Promise((r) => setTimeout(r, FLUSH_WINDOW_MS));
    first.child.kill('SIGKILL');
    await exited(first.child);
    aborts.abort();
    mock.clear();

    // Garbage after the last entry, as a crash mid-write could leave.
    const segDir = path.join(dir, 'interceptions');
    const segs = (await fs.readdir(segDir)).filter((f) => f.endsWith('.jsonl')).sort();
    await fs.appendFile(path.join(segDir, segs.at(-1)!), Buffer.from('5f3a9c01 {"id":"int_torn","us'));

    const second = await serve(dir, mock.url);
    try {
      const recs = await count(second);
      assert.equal(recs.length, 100, 'every acknowledged record, and nothing else');
      assert.ok(recs.every((r) => r.status === 'ok' && r.usage.input === 25 && r.costUsd !== null));
      assert.match(second.out(), /torn/i, 'the torn tail is reported');
      const again = await message(second.url, key);
      assert.equal(again.status, 200, 'the bridge serves after the crash');
      await again.text();
    } finally {
      second.child.kill('SIGKILL');
    }
  });

  it('SIGTERM with 50 open streams: each ends cleanly or with a stream error, records flushed, exit 0', async () => {
    const dir = await tempDir('aibridge-sigterm-');
    const s = await serve(dir, mock.url, { AIBRIDGE_SHUTDOWN_GRACE_MS: '300' });
    const key = await devKey(s);
    const gate = new Promise<void>(() => undefined);
    for (let i = 0; i < 50; i++) mock.next({ kind: 'gated', gate });
    const open = await Promise.all(Array.from({ length: 50 }, () => message(s.url, key, true)));
    const bodies = open.map((r) => r.text());
    s.child.kill('SIGTERM');
    assert.equal(await exited(s.child), 0);
    mock.clear();
    for (const text of await Promise.all(bodies)) {
      assert.match(text, /event: message_start/);
      assert.match(
        text,
        /event: error\ndata: .*shutting down/,
        'a stream cut by shutdown ends with an error event',
      );
    }
    const again = await serve(dir, mock.url);
    try {
      const recs = await count(again);
      assert.equal(recs.length, 50);
      assert.ok(recs.every((r) => r.status === 'error' && r.error?.type === 'shutting_down'));
    } finally {
      again.child.kill('SIGKILL');
    }
  });

  describe('when the store refuses writes', () => {
    let tb: TestBridge;
    let key: string;
    let failing = false;
    let original: TestBridge['bridge']['store']['appendInterception'];

    async function start(env: Record<string, string>): Promise<void> {
      tb = await startBridge(mock.url, env);
      key = (await tb.addUser('disk@example.com')).key;
      const store = tb.bridge.store;
      original = store.appendInterception.bind(store);
      // The store's write seam: what a full disk looks like from above.
      store.appendInterception = async (rec) => {
        if (failing)
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        return original(rec);
      };
    }
    async function auditHealth(): Promise<{ degraded: boolean; dropped: number }> {
      return (await tb.api<{ audit: { degraded: boolean; dropped: number } }>('GET', '/healthz', tb.adminKey))
        .body.audit;
    }
    afterEach(async () => {
      failing = false;
      await tb.close();
    });

    it('closed: new requests get 503 in the API shape until writes succeed; nothing acknowledged is lost', async () => {
      await start({});
      failing = true;
      const first = await message(tb.url, key);
      assert.equal(first.status, 200, 'the write fails after the answer');
      await first.text();
      await eventually(async () => (await auditHealth()).degraded, { what: 'the failed write to be seen' });
      const before = mock.messageRequests().length;
      const refused = await message(tb.url, key);
      assert.equal(refused.status, 503);
      const body = (await refused.json()) as { type: string; error: { type: string; message: string } };
      assert.equal(body.type, 'error');
      assert.match(body.error.message, /audit store/);
      assert.equal(mock.messageRequests().length, before, 'refused without contacting upstream');
      const health = await tb.api<{ audit: { degraded: boolean; failMode: string } }>(
        'GET',
        '/healthz',
        tb.adminKey,
      );
      assert.deepEqual([health.body.audit.failMode, health.body.audit.degraded], ['closed', true]);

      // Each failed retry is logged with its cause, not swallowed.
      const retried = (): string | undefined => tb.logs.find((l) => l.includes('audit retry failed'));
      for (const until = Date.now() + 5000; !retried() && Date.now() < until; )
        await new Promise((r) => setTimeout(r, 100));
      assert.match(retried() ?? 'no retry failure logged', /ENOSPC/);

      failing = false;
      const status = await eventually(
        async () => {
          const r = await message(tb.url, key);
          await r.text();
          return r.status === 503 ? undefined : r.status;
        },
        { intervalMs: 200, what: 'requests to be served again' },
      );
      assert.equal(status, 200, 'recovers by itself once writes succeed');
      const recs = await tb.interceptions(3);
      const mine = recs.filter((r) => r.userEmail === 'disk@example.com');
      assert.ok(mine.some((r) => r.status === 'ok' && r.startedAt <= mine.at(-1)!.startedAt));
      assert.ok(mine.some((r) => r.error?.type === 'audit_unavailable'));
      assert.equal(
        mine.filter((r) => r.status === 'ok').length,
        2,
        'the record written during the outage was kept',
      );
    });

    it('open: serves on, counts what it could not keep, and catches up', async () => {
      await start({ AIBRIDGE_AUDIT_FAILURE: 'open', AIBRIDGE_AUDIT_QUEUE_LIMIT: '3' });
      failing = true;
      for (let i = 0; i < 5; i++) {
        const r = await message(tb.url, key);
        assert.equal(r.status, 200, 'open mode keeps serving');
        await r.text();
      }
      await eventually(async () => (await auditHealth()).dropped === 2, {
        what: 'the two records over the queue limit',
      });
      const health = await tb.api<{ audit: { degraded: boolean; dropped: number; queued: number } }>(
        'GET',
        '/healthz',
        tb.adminKey,
      );
      assert.equal(health.body.audit.degraded, true);
      assert.equal(health.body.audit.dropped, 2);
      const metrics = await tb.bridge.metrics.registry.getSingleMetricAsString(
        'aibridge_audit_dropped_total',
      );
      assert.match(metrics, /aibridge_audit_dropped_total 2$/m);
      // The queue's depth as Prometheus reads it (at scrape time, from the recorder's count).
      const depth = async (): Promise<string> =>
        tb.bridge.metrics.registry.getSingleMetricAsString('aibridge_audit_write_queue_depth');
      assert.ok(health.body.audit.queued > 0);
      assert.match(
        await depth(),
        new RegExp(`^aibridge_audit_write_queue_depth ${health.body.audit.queued}$`, 'm'),
      );
      failing = false;
      await eventually(async () => !(await auditHealth()).degraded, {
        intervalMs: 100,
        what: 'the store to catch up',
      });
      assert.match(await depth(), /^aibridge_audit_write_queue_depth 0$/m);
      const recs = (await tb.interceptions(3)).filter((r) => r.userEmail === 'disk@example.com');
      assert.equal(recs.length, 3, 'the queued records were written once the store recovered');
    });
  });
});
