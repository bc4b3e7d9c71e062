/**
 * Sizing of the PostgreSQL store (docs/storage.md#sizing): the audit insert rate through the
 * store's batched writer, then the interceptions and usage APIs' response times with 1M records.
 * Runs against a throwaway PostgreSQL with fsync on. Not part of the test suite:
 *
 *   node --import tsx bench/pg-sizing.ts [records=1000000]
 */
import { randomUUID } from 'node:crypto';
import { chainHash, GENESIS } from '../server/core/chain';
import { PostgresStore } from '../server/store/postgres/postgres-store';
import type { Interception, Page } from '../shared/interception';
import { AnthropicMock } from '../test/helpers/anthropic-mock';
import { startBridge } from '../test/helpers/bridge';
import { startPostgres } from '../test/helpers/postgres';

const TOTAL = Number(process.argv[2] ?? 1_000_000);
const MEASURED_INSERTS = 50_000;
const USERS = 200;
const TEAMS = 10;
const DAYS = 30;
const END = Date.parse('2026-03-31T00:00:00.000Z');
const MODELS = [
  ['anthropic', 'messages', 'claude-sonnet-4-6'],
  ['anthropic', 'messages', 'claude-haiku-4-5'],
  ['openai', 'responses', 'gpt-5'],
] as const;

function record(i: number): Omit<Interception, 'seq'> {
  const u = (i * 7919) % USERS;
  // Each user mostly works with one model from one client, as people do.
  const [provider, api, model] = MODELS[(u + (i % 5 === 0 ? 1 : 0)) % MODELS.length]!;
  const started = END - DAYS * 86_400_000 + Math.floor((i / TOTAL) * DAYS * 86_400_000);
  return {
    id: `int_${randomUUID()}`,
    userId: `usr_${u}`,
    userEmail: `user${u}@example.com`,
    team: `team${u % TEAMS}`,
    keyId: `key_${u}`,
    provider,
    api,
    model,
    client: u % 2 === 0 ? 'claude-code' : 'codex',
    sessionId: `ses_${u}_${Math.floor(i / 50)}`,
    startedAt: new Date(started).toISOString(),
    endedAt: new Date(started + 2300).toISOString(),
    durationMs: 2300,
    status: i % 50 === 0 ? 'error' : 'ok',
    httpStatus: i % 50 === 0 ? 529 : 200,
    streamed: true,
    usage: {
      input: 1200 + (i % 900),
      output: 300 + (i % 200),
      cacheRead: 20_000,
      cacheWrite: 500,
      reasoning: 0,
    },
    costUsd: 0.01 + (i % 100) / 10_000,
    priceKnown: true,
    // About the size of a real prompt with capture `prompt`.
    prompt: `Refactor the ${i % 97} module so that the retry loop backs off; keep the tests green. ${'lorem ipsum '.repeat(30)}`,
    toolCalls:
      i % 3 === 0
        ? [
            {
              id: `toolu_${i}`,
              name: 'Bash',
              server: null,
              input: { command: 'npm test' },
              injected: false,
              at: new Date(started + 900).toISOString(),
            },
          ]
        : [],
    error: null,
    upstreamRequestId: `req_${i}`,
    redactions: [],
    capture: 'prompt',
  };
}

function ms(ns: bigint): number {
  return Number(ns / 1000n) / 1000;
}

async function time(label: string, runs: number, f: () => Promise<unknown>): Promise<void> {
  const t: number[] = [];
  await f();
  for (let i = 0; i < runs; i++) {
    const s = process.hrtime.bigint();
    await f();
    t.push(ms(process.hrtime.bigint() - s));
  }
  t.sort((a, b) => a - b);
  const at = (q: number): string => t[Math.min(t.length - 1, Math.floor(q * t.length))]!.toFixed(1);
  console.log(`${label.padEnd(64)} median ${at(0.5)} ms   p95 ${at(0.95)} ms`);
}

const pg = await startPostgres({ durable: true });
const url = await pg.createDatabase('sizing');
const upstream = await new AnthropicMock().start();
// A first start creates the admin (and its key in the data dir) on the empty database.
const first = await startBridge(upstream.url, { AIBRIDGE_DATABASE_URL: url, AIBRIDGE_LOG_LEVEL: 'warn' });
await first.close();
const store = new PostgresStore({ url, maxConnections: 8, queueLimit: 1_000_000 });
await store.open();
for (let u = 0; u < USERS; u++) {
  await store.createUser({
    id: `usr_${u}`,
    email: `user${u}@example.com`,
    name: null,
    team: `team${u % TEAMS}`,
    role: 'member',
    createdAt: new Date(0).toISOString(),
  });
}

// 1. Insert rate through the real write path: many requests ending at once, batched by the store.
{
  const start = process.hrtime.bigint();
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < MEASURED_INSERTS; i++) {
    pending.push(store.appendInterception(record(i)));
    // Hand-overs arrive over time, as responses end, not all in one tick.
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  await Promise.all(pending);
  const s = ms(process.hrtime.bigint() - start) / 1000;
  console.log(
    `insert: ${MEASURED_INSERTS} records in ${s.toFixed(1)} s = ${Math.round(MEASURED_INSERTS / s)} records/s (fsync on)`,
  );
}

// 2. Seed the rest quickly: chained in memory, imported in large batches.
{
  const head = (await store.listInterceptions({}, 1)).items[0]!;
  let prev = head.hash ?? GENESIS;
  let seq = head.seq;
  const start = process.hrtime.bigint();
  for (let i = MEASURED_INSERTS; i < TOTAL; ) {
    const batch: Interception[] = [];
    for (let n = 0; n < 5000 && i < TOTAL; n++, i++) {
      const linked: Interception = { ...record(i), seq: ++seq, prevHash: prev };
      const full = { ...linked, hash: chainHash(prev, linked) };
      prev = full.hash;
      batch.push(full);
    }
    await store.importInterceptions(batch);
  }
  const s = ms(process.hrtime.bigint() - start) / 1000;
  console.log(`seeded to ${TOTAL} records in ${s.toFixed(0)} s (batches of 5000)`);
}
await store.close();
{
  const { default: pgClient } = await import('pg');
  const c = new pgClient.Client({ connectionString: url });
  await c.connect();
  const r = await c.query<{ records: string; rollups: string; buckets: string }>(
    `SELECT pg_total_relation_size('interceptions') AS records, pg_total_relation_size('usage_buckets') AS rollups,
            (SELECT count(*) FROM usage_buckets) AS buckets`,
  );
  const row = r.rows[0]!;
  console.log(
    `size: interceptions with indexes ${(Number(row.records) / 2 ** 20).toFixed(0)} MiB (${Math.round(Number(row.records) / TOTAL)} bytes a record); ` +
      `rollups ${(Number(row.rollups) / 2 ** 20).toFixed(0)} MiB in ${row.buckets} buckets`,
  );
  await c.end();
}

// 3. The APIs, through a bridge on that database.
const tb = await startBridge(
  upstream.url,
  { AIBRIDGE_DATABASE_URL: url, AIBRIDGE_LOG_LEVEL: 'warn' },
  first.dataDir,
);
const get = async (route: string): Promise<unknown> => {
  const r = await tb.api('GET', route, tb.adminKey);
  if (r.status !== 200) throw new Error(`${route}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};
const deep = (await get('/api/v1/interceptions?limit=500')) as Page<Interception>;
const RUNS = 20;
await time('GET /api/v1/interceptions?limit=50 (newest)', RUNS, () => get('/api/v1/interceptions?limit=50'));
await time('GET /api/v1/interceptions?limit=50&cursor=… (next page)', RUNS, () =>
  get(`/api/v1/interceptions?limit=50&cursor=${deep.nextCursor}`),
);
await time('GET /api/v1/interceptions?limit=50&user=user7@example.com', RUNS, () =>
  get('/api/v1/interceptions?limit=50&user=user7%40example.com'),
);
await time('GET /api/v1/interceptions?limit=50&team=team3', RUNS, () =>
  get('/api/v1/interceptions?limit=50&team=team3'),
);
await time('GET /api/v1/interceptions?limit=50&since=…&until=… (one day, 2 weeks ago)', RUNS, () =>
  get('/api/v1/interceptions?limit=50&since=2026-03-15T00:00:00Z&until=2026-03-16T00:00:00Z'),
);
await time('GET /api/v1/interceptions?limit=50&tool=Bash', RUNS, () =>
  get('/api/v1/interceptions?limit=50&tool=Bash'),
);
await time('GET /api/v1/interceptions?limit=50&status=error', RUNS, () =>
  get('/api/v1/interceptions?limit=50&status=error'),
);
await time('GET /api/v1/interceptions?limit=50&q=module 42 (text, matches)', 5, () =>
  get('/api/v1/interceptions?limit=50&q=the%2042%20module'),
);
await time('GET /api/v1/usage (all time, by user)', RUNS, () => get('/api/v1/usage'));
await time('GET /api/v1/usage?groupBy=model&since=… (last 7 days)', RUNS, () =>
  get('/api/v1/usage?groupBy=model&since=2026-03-24T00:00:00Z'),
);
await time('GET /api/v1/usage?groupBy=day&user=user7@example.com', RUNS, () =>
  get('/api/v1/usage?groupBy=day&user=user7%40example.com'),
);
await time('GET /api/v1/audit/verify (whole chain)', 1, () => get('/api/v1/audit/verify'));
await tb.close();
await upstream.stop();
process.exit(0);
