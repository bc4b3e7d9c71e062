import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { AlertService } from '../../server/alerts/alert-service';
import { AnomalyWatcher, MAX_TRACKED_USERS } from '../../server/alerts/anomaly';
import { CircuitBreakers, MAX_BREAKERS } from '../../server/proxy/circuit-breaker';
import { detectClient } from '../../server/proxy/client-detect';
import { MAX_UNKNOWN_MODELS, PriceBook } from '../../server/spend/prices';
import type { NewInterception } from '../../server/store/types';
import { emptyUsage } from '../../shared/usage';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { OpenAIMock } from '../helpers/openai-mock';

/** Every byte the bridge keeps on disk, as text. */
async function dataDirBytes(dir: string): Promise<string> {
  const files = (await fs.readdir(dir, { recursive: true, withFileTypes: true })).filter((f) => f.isFile());
  const out: string[] = [];
  for (const f of files) out.push((await fs.readFile(path.join(f.parentPath, f.name))).toString('latin1'));
  return out.join('\n');
}

describe('strings a member chooses', () => {
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;
  let dev: { key: string };

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    tb = await startBridge(anthropic.url, {
      AIBRIDGE_OPENAI_BASE_URL: openai.url,
      AIBRIDGE_BODY_LIMIT: String(2 * 1024 * 1024),
      AIBRIDGE_LOG_LEVEL: 'trace',
      AIBRIDGE_BURST_RPM: '0',
      AIBRIDGE_BREAKER_THRESHOLD: '1',
    });
    dev = await tb.addUser('chooser@example.com');
  });
  after(async () => {
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  it('a 500 KB model name is refused with invalid_model in each API error shape, and nothing is recorded', async () => {
    const huge = `claude-${'x'.repeat(500 * 1024)}`;
    const upstreamBefore = anthropic.requests.length + openai.requests.length;
    const logBytesBefore = tb.logs.join('').length;

    const claude = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    const a = await claude.messages
      .create({ model: huge, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })
      .then(
        () => assert.fail('accepted'),
        (err: unknown) => err,
      );
    assert.ok(a instanceof Anthropic.APIError);
    assert.equal(a.status, 400);
    assert.deepEqual((a.error as { type: string; error: { type: string } }).type, 'error');
    assert.equal((a.error as { error: { type: string } }).error.type, 'invalid_request_error');

    const gpt = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
    for (const call of [
      () => gpt.chat.completions.create({ model: huge, messages: [{ role: 'user', content: 'hi' }] }),
      () => gpt.responses.create({ model: huge, input: 'hi' }),
    ]) {
      const o = await call().then(
        () => assert.fail('accepted'),
        (err: unknown) => err,
      );
      assert.ok(o instanceof OpenAI.APIError);
      assert.equal(o.status, 400);
      assert.equal(o.code, 'invalid_model');
      assert.equal(o.type, 'invalid_request_error');
    }

    assert.equal(anthropic.requests.length + openai.requests.length, upstreamBefore, 'sent upstream');
    await tb.bridge.recorder.drain();
    const recs = await tb.interceptions(0, tb.adminKey);
    assert.ok(!recs.some((r) => (r.model ?? '').length > 256), 'a record keeps the model name');
    assert.ok(!tb.logs.join('').slice(logBytesBefore).includes('x'.repeat(1024)), 'logged');
    assert.ok(!(await dataDirBytes(tb.dataDir)).includes('x'.repeat(1024)), 'stored');
    const unknown = await tb.api<unknown[]>('GET', '/api/v1/prices/unknown', tb.adminKey);
    assert.ok(JSON.stringify(unknown.body).length < 10_000, 'remembered as an unknown price');
    const health = await fetch(`${tb.url}/healthz`, { headers: { authorization: `Bearer ${tb.adminKey}` } });
    assert.ok((await health.text()).length < 10_000, '/healthz grew');
  });

  it('refuses model names with characters no model id has, and accepts the real ids', async () => {
    const post = (model: string): Promise<Response> =>
      fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'x-api-key': dev.key,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
        },
        body: JSON.stringify({ model, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
      });
    // `.` and `..` would be path segments where a provider puts the model in its URL (Bedrock's).
    for (const bad of [
      '',
      'claude sonnet',
      'claude\nsonnet',
      'claude"}',
      'x'.repeat(257),
      'modèle',
      '.',
      '..',
    ]) {
      const res = await post(bad);
      assert.equal(res.status, 400, JSON.stringify(bad));
      const body = (await res.json()) as { type: string; error: { type: string; message: string } };
      assert.equal(body.type, 'error');
      assert.equal(body.error.type, 'invalid_request_error');
    }
    for (const good of [
      'claude-sonnet-4-5',
      'us.anthropic.claude-sonnet-4-6-v1:0',
      'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6-v1:0',
      'models/gemini-2.5-pro',
      'ft:gpt-4o:org::id',
      'claude-3-5-sonnet@20240620',
      'x'.repeat(256),
      '...',
    ]) {
      const res = await post(good);
      assert.equal(res.status, 200, good);
      await res.text();
    }
  });

  it('a secret planted in the model name or the session id reaches no store, log, metric or report', async () => {
    const modelSecret = 'sk-ant-api03-Mq7Wv2Zr9Kp4Xt8Ls3Nd6Hf1Jb5Gc0Ye';
    const sessionSecret = 'sk-ant-api03-Sess9Kp4Xt8Ls3Nd6Hf1Jb5Gc0YeMq7Wv2';
    const codexSecret = 'ghp_16C7e42F292c6912E7710c838347Ae178B4aSess';
    const claude = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    await claude.messages.create(
      { model: `claude-${modelSecret}`, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] },
      { headers: { 'x-claude-code-session-id': `sess-${sessionSecret}` } },
    );
    // Anthropic's other session source, metadata.user_id, on a failing upstream so the breaker keeps it.
    anthropic.next({ kind: 'error', status: 500, type: 'api_error', message: 'down' });
    await claude.messages
      .create({
        model: `claude-${modelSecret}`,
        max_tokens: 8,
        metadata: { user_id: `user_${sessionSecret}` },
        messages: [{ role: 'user', content: 'hi' }],
      })
      .catch(() => undefined);
    const gpt = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
    await gpt.chat.completions.create(
      { model: `gpt-${modelSecret}`, messages: [{ role: 'user', content: 'hi' }] },
      { headers: { 'session-id': codexSecret } },
    );
    await tb.bridge.recorder.drain();
    const recs = await tb.interceptions(3, tb.adminKey);

    const health = await (
      await fetch(`${tb.url}/healthz`, { headers: { authorization: `Bearer ${tb.adminKey}` } })
    ).text();
    const metrics = await (
      await fetch(`${tb.url}/metrics`, { headers: { authorization: `Bearer ${tb.adminKey}` } })
    ).text();
    const usage = await tb.api('GET', '/api/v1/usage?groupBy=model&format=json', tb.adminKey);
    const everything = {
      records: JSON.stringify(recs),
      logs: tb.logs.join(''),
      metrics,
      usage: JSON.stringify(usage.body),
      healthz: health,
      dataDir: await dataDirBytes(tb.dataDir),
    };
    for (const [where, blob] of Object.entries(everything)) {
      for (const secret of [modelSecret, sessionSecret, codexSecret])
        assert.ok(
          !blob.includes(secret),
          `${secret.slice(0, 12)}… leaked into ${where}: ${blob.slice(Math.max(0, blob.indexOf(secret) - 300), blob.indexOf(secret) + 60)}`,
        );
    }
    // Redacted, not dropped: the records and the breaker still say which request it was.
    const mine = recs.filter((r) => (r.model ?? '').includes('REDACTED'));
    assert.ok(mine.length >= 3, `records of the planted requests: ${mine.length}`);
    assert.ok(mine.some((r) => r.sessionId?.includes('[REDACTED:')));
    // And listed, so a search of the records that held a key finds them.
    const first = mine.find((r) => r.sessionId?.includes('[REDACTED:') && r.provider === 'anthropic')!;
    assert.deepEqual(
      first.redactions
        .filter((x) => x.field === 'model' || x.field === 'sessionId')
        .map((x) => x.field)
        .sort(),
      ['model', 'sessionId'],
    );
    assert.match(health, /REDACTED:anthropic_key/, 'the failing breaker is shown, redacted');
  });

  it('a tool result with a 100 KB call id keeps no more than an empty id', async () => {
    const longId = `toolu_${'q'.repeat(100 * 1024)}`;
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': dev.key,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify({
        model: 'claude-sonnet-4-5',
        max_tokens: 8,
        messages: [
          { role: 'user', content: 'run it' },
          { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'Bash', input: {} }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: longId, content: 'done' }] },
        ],
      }),
    });
    assert.equal(res.status, 200);
    await res.text();
    await tb.bridge.recorder.drain();
    const recs = await tb.interceptions(1, tb.adminKey);
    const rec = recs.find((r) => (r.toolResults ?? []).length > 0);
    assert.ok(rec, 'the request is recorded');
    assert.equal(rec.toolResults?.[0]?.callId, '');
    assert.equal(rec.toolResults?.[0]?.contentLength, 4);
    assert.ok(!(await dataDirBytes(tb.dataDir)).includes('q'.repeat(1024)), 'stored');
  });

  it('client names come from a fixed set, whatever the headers say', () => {
    const names = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const vendor = `V${'abcdefghij'.slice(0, i % 10)}${'XYZ'.slice(0, i % 3)}`;
      names.add(detectClient({ 'x-stainless-lang': `lang${i}`, 'user-agent': `${vendor}/JS 1.0` }));
      names.add(detectClient({ 'x-stainless-lang': `lang${i}`, 'user-agent': `Vendor${i}/JS 1.0` }));
    }
    assert.deepEqual([...names].sort(), ['other-sdk-other', 'sdk-other']);
    assert.equal(
      detectClient({ 'x-stainless-lang': 'js', 'user-agent': 'Anthropic/JS 0.60.0' }),
      'anthropic-sdk-js',
    );
    assert.equal(
      detectClient({ 'x-stainless-lang': 'python', 'user-agent': 'OpenAI/Python 1.0' }),
      'openai-sdk-python',
    );
  });

  it('10,000 distinct model names: breakers and unknown prices stay at their bounds', () => {
    let t = 0;
    const breakers = new CircuitBreakers({ threshold: 1, cooldownMs: 1000 }, () => t);
    const prices = new PriceBook();
    for (let i = 0; i < 10_000; i++) {
      const model = `model-${i}`;
      t += 1;
      assert.ok(breakers.admit('anthropic', model).admitted);
      breakers.record('anthropic', model, false, false);
      prices.price('anthropic', model, { ...emptyUsage(), input: 1 });
    }
    assert.equal(breakers.size, MAX_BREAKERS);
    assert.ok(breakers.snapshot().length <= MAX_BREAKERS);
    assert.equal(prices.unknownCount, MAX_UNKNOWN_MODELS);
    // The newest are kept: the breaker of the last model still refuses.
    assert.equal(breakers.admit('anthropic', 'model-9999').admitted, false);
    assert.ok(prices.listUnknown().some((u) => u.model === 'model-9999'));
    // Healthy answers keep nothing.
    const healthy = new CircuitBreakers({ threshold: 5, cooldownMs: 1000 });
    for (let i = 0; i < 1000; i++) {
      healthy.admit('openai', `m-${i}`);
      healthy.record('openai', `m-${i}`, true, false);
    }
    assert.equal(healthy.size, 0);
  });

  it('the anomaly rules keep the recent activity of at most 10,000 users', async function () {
    // Ten thousand users' rules run against the store: slow on a shared machine.
    this.timeout(60_000);
    assert.equal(MAX_TRACKED_USERS, 10_000);
    const { store, bus, app, metrics } = tb.bridge;
    const watcher = new AnomalyWatcher(store, new AlertService(store, bus, app.log, metrics, undefined), {
      anomalyFactor: 5,
      anomalyMinUsd: 1,
      anomalyMinTokens: 500_000,
      burstRpm: 0,
    });
    const rec = (i: number): NewInterception =>
      ({
        userId: `usr_${i}`,
        userEmail: `u${i}@example.com`,
        team: 't',
        costUsd: 0,
        usage: emptyUsage(),
      }) as NewInterception;
    for (let i = 0; i < 10_500; i++) await watcher.observe(rec(i));
    assert.equal(watcher.trackedUsers, 10_000);
    // The least recently active go first. usr_500 is now the oldest kept, usr_10499 the newest.
    for (const i of [500, 500, 501, 500]) await watcher.observe(rec(i));
    for (const i of [20_000, 20_001, 20_002]) await watcher.observe(rec(i));
    assert.deepEqual(
      [500, 501, 502, 503, 504, 505].map((i) => watcher.tracks(`usr_${i}`)),
      [true, true, false, false, false, true],
    );
    assert.equal(watcher.trackedUsers, 10_000);
  });

  it('through the bridge, failing distinct model names keep /healthz and the breakers bounded', async () => {
    const n = MAX_BREAKERS + 44;
    for (let i = 0; i < n; i++)
      anthropic.next({ kind: 'error', status: 503, type: 'overloaded_error', message: 'x' });
    for (let i = 0; i < n; i++) {
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'x-api-key': dev.key,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
        },
        body: JSON.stringify({
          model: `claude-${String(i).padStart(4, '0')}-${'m'.repeat(200)}`,
          max_tokens: 8,
          messages: [{ role: 'user', content: 'hi' }],
        }),
      });
      await res.text();
    }
    const health = (await (
      await fetch(`${tb.url}/healthz`, { headers: { authorization: `Bearer ${tb.adminKey}` } })
    ).json()) as { breakers: unknown[] };
    assert.ok(health.breakers.length <= MAX_BREAKERS, `${health.breakers.length} breakers`);
    assert.ok(JSON.stringify(health).length < MAX_BREAKERS * 400);
  });
});
