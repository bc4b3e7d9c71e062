import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { MIGRATIONS } from '../../server/store/postgres/migrations';
import type { Interception, Page } from '../../shared/interception';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, tempDir } from '../helpers/bridge';
import { runCli } from '../helpers/cli';
import { testPostgres } from '../helpers/postgres';
import { newRecord } from './contract';

async function ask(url: string, key: string, prompt: string): Promise<number> {
  return (await askMessages(url, key, { max_tokens: 100, prompt })).status;
}

describe('aibridge migrate and aibridge store copy', function () {
  this.timeout(60_000);
  let upstream: AnthropicMock;
  before(async () => {
    upstream = await new AnthropicMock().start();
  });
  after(async () => {
    await upstream.stop();
  });

  it('migrate applies the schema once and then reports it up to date', async () => {
    const url = await (await testPostgres()).createDatabase('migrate');
    const first = await runCli(['migrate', '--database-url', url]);
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, new RegExp(`applied ${MIGRATIONS.map((m) => `step ${m.version}`).join(', ')}`));
    const again = await runCli(['migrate'], { AIBRIDGE_DATABASE_URL: url });
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /up to date/);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const r = await c.query('SELECT version FROM schema_migrations');
      assert.deepEqual(
        r.rows.map((x) => x.version).sort((a, b) => a - b),
        MIGRATIONS.map((m) => m.version),
      );
    } finally {
      await c.end();
    }
    const bad = await runCli(['migrate', '--database-url', 'mysql://x/y']);
    assert.equal(bad.code, 2);
    assert.match(bad.out, /AIBRIDGE_DATABASE_URL: expected a postgres:\/\/ URL/);
  });

  it('store copy from a directory that holds no store fails with exit 2, creating nothing there', async () => {
    const url = await (await testPostgres()).createDatabase('copy_from_nothing');
    const missing = path.join(await tempDir(), 'no-such-dir');
    const copied = await runCli(['store', 'copy', '--from', missing, '--to', url]);
    assert.equal(copied.code, 2, copied.out);
    assert.match(copied.out, /holds no embedded store/);
    assert.equal(fs.existsSync(missing), false, 'the mistyped directory is not created');
  });

  it('a source whose tail was cut copies with the cut kept: the copy does not verify, and says so', async () => {
    const dir = await tempDir('aibridge-copy-cut-');
    const embedded = await startBridge(upstream.url, {}, dir);
    const dev = await embedded.addUser('cut@example.com');
    for (let i = 0; i < 6; i++) assert.equal(await ask(embedded.url, dev.key, `question ${i}`), 200);
    await embedded.interceptions(6);
    await embedded.close();
    // Records 5 and 6 cut off the journal behind the bridge's back.
    const segDir = path.join(dir, 'interceptions');
    const seg = path.join(
      segDir,
      fs
        .readdirSync(segDir)
        .filter((f) => f.endsWith('.jsonl'))
        .sort()[0]!,
    );
    const lines = fs.readFileSync(seg, 'utf8').trimEnd().split('\n');
    fs.writeFileSync(seg, `${lines.slice(0, 4).join('\n')}\n`);
    const url = await (await testPostgres()).createDatabase('copy_cut');
    const copied = await runCli(['store', 'copy', '--from', dir, '--to', url]);
    assert.notEqual(copied.code, 0, copied.out);
    assert.match(copied.out, /the copy does not verify: 2 records missing at the tail/);
    // A bridge on the copy says the same.
    const onPg = await startBridge(upstream.url, { AIBRIDGE_DATABASE_URL: url }, dir);
    try {
      const report = await onPg.api<{ ok: boolean; truncated: { missing: number } | null }>(
        'GET',
        '/api/v1/audit/verify',
        onPg.adminKey,
      );
      assert.equal(report.body.ok, false);
      assert.equal(report.body.truncated?.missing, 2);
    } finally {
      await onPg.close();
    }
  });

  it('moves an embedded deployment to PostgreSQL with records, keys and the chain intact', async () => {
    const embedded = await startBridge(upstream.url);
    const dev = await embedded.addUser('dev@example.com', { team: 'red' });
    for (let i = 0; i < 12; i++) assert.equal(await ask(embedded.url, dev.key, `question ${i}`), 200);
    const budget = await embedded.api('PUT', '/api/v1/budgets', embedded.adminKey, {
      scope: 'team',
      subject: 'red',
      period: 'month',
      limitUsd: 100,
      action: 'alert',
    });
    assert.ok(budget.status < 300, JSON.stringify(budget.body));
    const before = await embedded.interceptions(12);
    // MCP gateway calls (docs/mcp.md) travel too.
    const gatewayCalls = [0, 1].map((n) => ({
      id: `gwc_copy_${n}`,
      at: new Date(Date.now() - (2 - n) * 1000).toISOString(),
      userId: dev.user.id,
      userEmail: dev.user.email,
      team: 'red',
      keyId: dev.keyId,
      client: 'claude-code',
      sessionId: null,
      name: 'docs__search',
      server: 'docs',
      tool: 'search',
      input: { q: `copy ${n}` },
      outcome: 'ok' as const,
      durationMs: 5,
      resultBytes: 10,
      error: null,
    }));
    for (const c of gatewayCalls) await embedded.bridge.store.appendGatewayCall(c);
    await embedded.close();

    const url = await (await testPostgres()).createDatabase('copy');
    const copied = await runCli(['store', 'copy', '--from', embedded.dataDir, '--to', url]);
    assert.equal(copied.code, 0, copied.out);
    assert.match(
      copied.out,
      /2 users, 2 keys, 1 documents, .* 12 interceptions, 2 MCP gateway calls; chain verified/,
    );

    // The same data dir (key-hash secret, admin key), now on the database.
    const moved = await startBridge(upstream.url, { AIBRIDGE_DATABASE_URL: url }, embedded.dataDir);
    try {
      assert.equal(moved.bridge.store.kind, 'postgres');
      const page = await moved.api<Page<Interception>>(
        'GET',
        '/api/v1/interceptions?limit=100',
        moved.adminKey,
      );
      assert.deepEqual(page.body.items, before, 'records exactly as they were, seq and hashes included');
      const calls = await moved.api<{ items: { id: string; via: string }[] }>(
        'GET',
        '/api/v1/tool-calls?via=gateway',
        moved.adminKey,
      );
      assert.deepEqual(
        calls.body.items.map((c) => c.id),
        ['gwc_copy_1', 'gwc_copy_0'],
      );
      const verify = await moved.api<{ ok: boolean; checked: number }>(
        'GET',
        '/api/v1/audit/verify',
        moved.adminKey,
      );
      assert.deepEqual({ ok: verify.body.ok, checked: verify.body.checked }, { ok: true, checked: 12 });
      const usage = await moved.api<{ totals?: { requests?: number } }>(
        'GET',
        '/api/v1/usage',
        moved.adminKey,
      );
      assert.equal(usage.status, 200);
      assert.match(JSON.stringify(usage.body), /"requests":12/);
      const budgets = await moved.api<{ items: { subject: string }[] }>(
        'GET',
        '/api/v1/budgets',
        moved.adminKey,
      );
      assert.deepEqual(
        budgets.body.items.map((b) => b.subject),
        ['red'],
      );

      // The old key still works, and new records continue the copied chain.
      assert.equal(await ask(moved.url, dev.key, 'after the move'), 200);
      const after = await moved.interceptions(13);
      assert.equal(after[0]!.seq, 13);
      assert.equal(after[0]!.prevHash, before[0]!.hash);
      const again = await moved.api<{ ok: boolean; checked: number }>(
        'GET',
        '/api/v1/audit/verify',
        moved.adminKey,
      );
      assert.deepEqual({ ok: again.body.ok, checked: again.body.checked }, { ok: true, checked: 13 });
    } finally {
      await moved.close();
    }

    const refused = await runCli(['store', 'copy', '--from', embedded.dataDir, '--to', url]);
    assert.equal(refused.code, 2, 'a second copy into a database with data is refused');
    assert.match(refused.out, /not empty/);
  });

  it('carries the rollups of records the source pruned, so spend longer than its retention comes across', async () => {
    const dir = await tempDir('aibridge-copy-pruned-');
    const store = new EmbeddedStore({ dataDir: dir, segmentBytes: 4096 });
    await store.open();
    const now = Date.now();
    for (let i = 0; i < 40; i++) {
      const t = new Date(now - (i < 30 ? 40 : 1) * 86_400_000 + i * 1000).toISOString();
      await store.appendInterception(
        newRecord(i, { startedAt: t, endedAt: t, prompt: `r ${i} ${'y'.repeat(300)}` }),
      );
    }
    const pruned = await store.pruneInterceptions(new Date(now - 30 * 86_400_000).toISOString());
    assert.ok(pruned > 0);
    await store.close();
    const url = await (await testPostgres()).createDatabase('copy_pruned');
    const copied = await runCli(['store', 'copy', '--from', dir, '--to', url]);
    assert.equal(copied.code, 0, copied.out);
    assert.match(
      copied.out,
      new RegExp(`${40 - pruned} interceptions, 0 MCP gateway calls, \\d+ rollup buckets of pruned records`),
    );
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const r = await c.query('SELECT sum(requests)::int AS n FROM usage_buckets');
      assert.equal(r.rows[0].n, 40, 'the pruned records’ requests with the kept ones’');
    } finally {
      await c.end();
    }
  });
});
