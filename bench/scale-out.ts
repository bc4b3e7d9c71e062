/**
 * The scale-out run (`npm run bench -- --replicas 3`, outside CI): N bridge replicas on one
 * PostgreSQL behind HAProxy (the system's package), mixed streaming traffic from several users,
 * some of them on a team with a small blocking budget; one replica is killed with SIGKILL mid-run
 * and started again. It reports what an operator would ask after such a night:
 *
 * - requests failed, and how many of those were in flight on the killed replica;
 * - records acknowledged (the client got a whole answer and its interception id) and lost (an
 *   acknowledged id the store does not have once the replicas have stopped);
 * - the capped team's spend against its limit (the budget overshoot);
 * - throughput per replica (HAProxy names the server that answered each request);
 * - live events across replicas: of the answers the other replicas served, how many an admin's
 *   WebSocket client on the first replica heard end (`interception.ended`).
 *
 * Bounded in time; every child (PostgreSQL, HAProxy, mock, replicas) is killed however it ends.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { liveClient } from '../test/helpers/live-client';
import { startPostgres } from '../test/helpers/postgres';
import {
  type Child,
  cleanupNow,
  installExitHandlers,
  onCleanup,
  start,
  stop,
  waitForLine,
} from './lib/procs';
import { percentiles, round } from './lib/stats';

const ROOT = path.resolve(import.meta.dirname, '..');
const BUNDLE = path.join(ROOT, 'dist', 'aibridge.cjs');
const KEY_HASH_SECRET = 'scale-out-bench-key-hash-secret-0123456789';
const DEADLINE_MS = 5 * 60_000;

interface Plan {
  replicas: number;
  durationMs: number;
  killAtMs: number;
  restartAtMs: number;
  rate: number;
  users: number;
  cappedUsers: number;
  capUsd: number;
}

const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function api<T>(base: string, key: string, method: string, p: string, body?: unknown): Promise<T> {
  const res = await fetch(`${base}${p}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

interface Replica {
  name: string;
  port: number;
  dataDir: string;
  child: Child | undefined;
}

async function startReplica(r: Replica, mockUrl: string, dbUrl: string): Promise<void> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AIBRIDGE_')) env[k] = v;
  Object.assign(env, {
    AIBRIDGE_ANTHROPIC_BASE_URL: mockUrl,
    AIBRIDGE_ANTHROPIC_API_KEY: 'sk-ant-scale-out-upstream',
    AIBRIDGE_DATABASE_URL: dbUrl,
    AIBRIDGE_KEY_HASH_SECRET: KEY_HASH_SECRET,
    AIBRIDGE_LOG_LEVEL: 'warn',
    AIBRIDGE_CONNECTIONS_PER_ADDRESS: '0',
    // …and its one bench user's requests are every developer's: no per-user cap either.
    AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER: '0',
    AIBRIDGE_SHUTDOWN_GRACE_MS: '2000',
  });
  r.child = start(
    r.name,
    process.execPath,
    [BUNDLE, 'serve', '--host', '127.0.0.1', '--port', String(r.port), '--data-dir', r.dataDir],
    { env, cwd: ROOT },
  );
  await waitForLine(r.child, /listening on http/, 30_000);
}

function haproxyConfig(port: number, replicas: Replica[]): string {
  return [
    'global',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  timeout connect 2s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  option redispatch',
    '  retries 2',
    'frontend bridge',
    `  bind 127.0.0.1:${port}`,
    '  default_backend replicas',
    'backend replicas',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    '  http-response set-header x-served-by %s',
    ...replicas.map((r) => `  server ${r.name} 127.0.0.1:${r.port} check inter 500 fall 2 rise 2`),
    '',
  ].join('\n');
}

interface Outcome {
  user: number;
  ok: boolean;
  status: number;
  servedBy: string;
  interceptionId: string | null;
  startedAt: number;
  endedAt: number;
  refusedForBudget: boolean;
}

const BODY = JSON.stringify({
  model: 'claude-sonnet-4-5',
  max_tokens: 1024,
  stream: true,
  messages: [{ role: 'user', content: 'scale-out bench' }],
});

async function one(lb: string, user: number, key: string): Promise<Outcome> {
  const startedAt = performance.now();
  try {
    const res = await fetch(`${lb}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: BODY,
    });
    const text = await res.text();
    const ok = res.status === 200 && text.includes('event: message_stop') && !text.includes('event: error');
    return {
      user,
      ok,
      status: res.status,
      servedBy: res.headers.get('x-served-by') ?? '?',
      interceptionId: ok ? res.headers.get('x-aibridge-interception-id') : null,
      startedAt,
      endedAt: performance.now(),
      refusedForBudget: res.status === 429 && /budget/i.test(text),
    };
  } catch {
    return {
      user,
      ok: false,
      status: 0,
      servedBy: '?',
      interceptionId: null,
      startedAt,
      endedAt: performance.now(),
      refusedForBudget: false,
    };
  }
}

export async function scaleOut(replicaCount: number, quick: boolean): Promise<void> {
  installExitHandlers();
  const deadline = setTimeout(() => {
    log('scale-out: still running after 5 minutes: stopping');
    cleanupNow();
    process.exit(1);
  }, DEADLINE_MS);
  deadline.unref();
  if (spawnSync('haproxy', ['-v']).status !== 0)
    throw new Error(
      'haproxy is not installed (apt-get install haproxy): the scale-out run needs a load balancer',
    );
  const plan: Plan = {
    replicas: replicaCount,
    durationMs: quick ? 12_000 : 40_000,
    killAtMs: quick ? 4_000 : 15_000,
    restartAtMs: quick ? 7_000 : 22_000,
    rate: 40,
    users: 8,
    cappedUsers: 4,
    capUsd: 0.5,
  };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aibridge-scale-'));
  onCleanup(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const pgServer = await startPostgres({ durable: true });
  const dbUrl = await pgServer.createDatabase('scale');
  const mock = start(
    'mock',
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'bench/mock-upstream.ts')],
    {
      cwd: ROOT,
    },
  );
  const mockUrl = (await waitForLine(mock, /mock listening on (http:\/\/\S+)/, 30_000))[1] ?? '';

  const replicas: Replica[] = [];
  for (let i = 0; i < plan.replicas; i++)
    replicas.push({
      name: `r${i + 1}`,
      port: await freePort(),
      dataDir: path.join(tmp, `r${i + 1}`),
      child: undefined,
    });
  // The first replica creates the schema and the first admin; the others join it.
  await startReplica(replicas[0]!, mockUrl, dbUrl);
  await Promise.all(replicas.slice(1).map((r) => startReplica(r, mockUrl, dbUrl)));
  const first = `http://127.0.0.1:${replicas[0]!.port}`;
  const adminKey = fs.readFileSync(path.join(replicas[0]!.dataDir, 'admin.key'), 'utf8').trim();

  const keys: string[] = [];
  for (let u = 0; u < plan.users; u++) {
    const email = `dev${u}@scale.test`;
    const team = u < plan.cappedUsers ? 'capped' : 'open';
    await api(first, adminKey, 'POST', '/api/v1/users', { email, team });
    keys.push(
      (
        await api<{ key: string }>(
          first,
          adminKey,
          'POST',
          `/api/v1/users/${encodeURIComponent(email)}/keys`,
          {},
        )
      ).key,
    );
  }
  await api(first, adminKey, 'PUT', '/api/v1/budgets', {
    scope: 'team',
    subject: 'capped',
    period: 'day',
    limitUsd: plan.capUsd,
    action: 'block',
  });

  const lbPort = await freePort();
  const cfg = path.join(tmp, 'haproxy.cfg');
  fs.writeFileSync(cfg, haproxyConfig(lbPort, replicas));
  const lb = start('haproxy', 'haproxy', ['-db', '-f', cfg], { cwd: tmp });
  const lbUrl = `http://127.0.0.1:${lbPort}`;
  for (let i = 0; i < 100; i++) {
    const up = await fetch(`${lbUrl}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    await sleep(100);
  }

  // An admin watching the first replica directly: every replica's requests should reach it.
  const watcher = liveClient(first, { key: adminKey });
  await watcher.next('hello', undefined, 10_000);

  log(
    `scale-out: ${plan.replicas} replicas behind HAProxy, ${plan.rate} streams/s for ${plan.durationMs / 1000} s`,
  );
  const outcomes: Promise<Outcome>[] = [];
  const t0 = performance.now();
  let killedAt = 0;
  let restartedAt = 0;
  const victim = replicas[1] ?? replicas[0]!;
  let n = 0;
  while (performance.now() - t0 < plan.durationMs) {
    const elapsed = performance.now() - t0;
    if (!killedAt && elapsed >= plan.killAtMs) {
      killedAt = performance.now();
      victim.child?.proc.kill('SIGKILL');
      log(`scale-out: SIGKILL ${victim.name} at ${round(elapsed / 1000, 1)} s`);
    }
    if (killedAt && !restartedAt && elapsed >= plan.restartAtMs) {
      restartedAt = performance.now();
      void startReplica(victim, mockUrl, dbUrl).then(() => log(`scale-out: ${victim.name} back`));
    }
    const user = n % plan.users;
    outcomes.push(one(lbUrl, user, keys[user]!));
    n++;
    const next = t0 + (n * 1000) / plan.rate;
    const wait = next - performance.now();
    if (wait > 0) await sleep(wait);
  }
  const results = await Promise.all(outcomes);
  // Live events are gathered for 20 ms before they go out; give the last ones time to land.
  await sleep(1_000);
  const heardEnded = new Set(
    watcher.events.flatMap((e) => (e.type === 'interception.ended' ? [e.interceptionId] : [])),
  );
  await watcher.close();

  // Every replica stops cleanly (flushing what it accepted) before the store is read.
  await stop(lb);
  for (const r of replicas) if (r.child) await stop(r.child, 10_000);
  await stop(mock);

  const client = new pg.Client({ connectionString: dbUrl });
  await client.connect();
  const acknowledged = results.filter((r) => r.interceptionId);
  const ids = acknowledged.map((r) => r.interceptionId!);
  const found = new Set(
    (await client.query<{ id: string }>('SELECT id FROM interceptions WHERE id = ANY($1)', [ids])).rows.map(
      (r) => r.id,
    ),
  );
  const spent = await client.query<{ cost: string | null }>(
    `SELECT sum(((record::jsonb)->>'costUsd')::numeric) AS cost FROM interceptions WHERE team = 'capped'`,
  );
  await client.end();

  const failed = results.filter((r) => !r.ok && !r.refusedForBudget);
  // In flight on the victim when it died: begun before, ended after, and its (or without an answer).
  const inFlightAtKill = results.filter(
    (r) => r.startedAt <= killedAt && r.endedAt >= killedAt && (r.servedBy === victim.name || !r.ok),
  );
  const failedInFlight = failed.filter((r) => r.startedAt <= killedAt + 1_000 && r.endedAt >= killedAt);
  const perReplica: Record<string, number> = {};
  for (const r of results) if (r.ok) perReplica[r.servedBy] = (perReplica[r.servedBy] ?? 0) + 1;
  const seconds = plan.durationMs / 1000;
  const spentUsd = Number(spent.rows[0]?.cost ?? 0);
  const costPer = 0.0036 + 0.01764;
  const report = {
    replicas: plan.replicas,
    requests: results.length,
    ok: results.filter((r) => r.ok).length,
    refusedForBudget: results.filter((r) => r.refusedForBudget).length,
    failed: failed.length,
    failedAroundTheKill: failedInFlight.length,
    failedElsewhere: failed.length - failedInFlight.length,
    inFlightOnTheKilledReplica: inFlightAtKill.length,
    acknowledged: acknowledged.length,
    lost: ids.filter((id) => !found.has(id)).length,
    cappedTeam: {
      limitUsd: plan.capUsd,
      spentUsd: round(spentUsd, 4),
      overshootUsd: round(Math.max(0, spentUsd - plan.capUsd), 4),
      overshootRequests: round(Math.max(0, spentUsd - plan.capUsd) / costPer, 1),
    },
    throughputPerReplica: Object.fromEntries(
      Object.entries(perReplica).map(([k, v]) => [k, round(v / seconds, 1)]),
    ),
    latencyMs: percentiles(results.filter((r) => r.ok).map((r) => r.endedAt - r.startedAt)),
    liveEventsOnFirstReplica: (() => {
      const elsewhere = acknowledged.filter((r) => r.servedBy !== replicas[0]!.name);
      return {
        answeredByTheOthers: elsewhere.length,
        heardEnded: elsewhere.filter((r) => heardEnded.has(r.interceptionId!)).length,
      };
    })(),
  };
  console.log(JSON.stringify(report, null, 2));
  fs.writeFileSync(path.join(ROOT, 'bench', 'scale-out.json'), `${JSON.stringify(report, null, 2)}\n`);
  cleanupNow();
}
