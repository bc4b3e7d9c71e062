/**
 * Two builds of the bridge side by side at saturation, rounds alternating, on the embedded store
 * or on one throwaway PostgreSQL (fsync on; a database each). What a change costs, measured in one
 * run on the same machine state rather than across two full benches:
 *
 *   node --import tsx bench/ab.ts A.cjs B.cjs [--pg | --pg-b] [--rounds 4] [--ms 3000] [--connections 16]
 *
 * Either build may be `floor`: the bench's bare proxy (bench/floor-proxy.ts) in front of the same mock.
 *
 * `--gc`: each bridge runs with V8's --trace-gc-nvp, and what its young-generation collections did
 * during its measured rounds is printed: bytes allocated per request, the share of them that
 * survived a collection and that was promoted to the old generation, and the collections' time on
 * the main thread and on V8's helper threads (docs/performance.md, "What outlived each request").
 *
 * `--pg-b`: A on the embedded store, B on PostgreSQL (give the same build twice: the store's ratio).
 *
 * `--rate N`: an open loop at N requests a second instead of saturation, each round after 2 s at
 * that rate unmeasured; prints each side's latency percentiles and how long its records took to
 * be durable (`aibridge_audit_write_seconds`): where a PostgreSQL p99 comes from.
 *
 * `--syscalls`: strace counts each side's system calls over its measured rounds (strace slows the
 * side it watches, so read the counts per request, not that side's rate or CPU).
 *
 * `--body agent`: each request a ~60 KB Claude Code-shaped turn (loadgen's `agent` body) instead
 * of the small JSON one.
 *
 * `--env-a NAME=VALUE`, `--env-b NAME=VALUE` (repeatable): a setting for one side only, e.g.
 * `--env-b AIBRIDGE_AUDIT_ACK=stored` (the bench clears every other AIBRIDGE_ variable).
 *
 * `--node-a ARG`, `--node-b ARG` (repeatable): a Node option for one side's bridge only, e.g.
 * `--node-b --cpu-prof --node-b --cpu-prof-dir=/tmp/prof` (NODE_OPTIONS refuses --cpu-prof).
 *
 * Prints, per build, requests a second and CPU ms per 1,000 requests (the bridge's process; with
 * --pg also the database server's processes, summed), and for a bridge how long its records took
 * to be durable over the whole run.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startPostgres } from '../test/helpers/postgres';
import {
  type Child,
  call,
  cleanupNow,
  cpuMs,
  cpuSplitMs,
  installExitHandlers,
  onCleanup,
  start,
  startWorker,
  stop,
  threadCpuMs,
  waitForLine,
} from './lib/procs';
import { percentiles } from './lib/stats';
import type { JobResult } from './loadgen';

const BENCH = path.dirname(new URL(import.meta.url).pathname);
const ROOT = path.resolve(BENCH, '..');
const args = process.argv.slice(2);
const flag = (name: string, fallback: number): number => {
  const i = args.indexOf(name);
  return i === -1 ? fallback : Number(args[i + 1]);
};
const builds = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
const PG_B = args.includes('--pg-b');
const PG = args.includes('--pg') || PG_B;
const ROUNDS = flag('--rounds', 4);
const MS = flag('--ms', 3_000);
const CONNECTIONS = flag('--connections', 16);
const GC = args.includes('--gc');
const SYSCALLS = args.includes('--syscalls');
const RATE = flag('--rate', 0);
const BODY = (() => {
  const i = args.indexOf('--body');
  const b = i === -1 ? 'json' : args[i + 1];
  if (b !== 'json' && b !== 'agent') throw new Error('--body takes json or agent');
  return b;
})();
/** `--env-a` / `--env-b` settings, per side. */
const sideEnv = (name: string): Record<string, string> => {
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length - 1; i++) {
    if (args[i] !== name) continue;
    const [k, ...v] = (args[i + 1] ?? '').split('=');
    if (!k || v.length === 0) throw new Error(`${name} takes NAME=VALUE`);
    out[k] = v.join('=');
  }
  return out;
};
const SIDE_ENV = [sideEnv('--env-a'), sideEnv('--env-b')];
/** `--node-a` / `--node-b` options, per side (NODE_OPTIONS refuses some, --cpu-prof among them). */
const sideNode = (name: string): string[] =>
  args.flatMap((a, i) => (a === name && args[i + 1] !== undefined ? [args[i + 1]!] : []));
const SIDE_NODE = [sideNode('--node-a'), sideNode('--node-b')];

/** What one bridge's scavenges did while its rounds were measured (--gc). */
class ScavengeTally {
  measuring = false;
  count = 0;
  allocated = 0;
  survived = 0;
  promoted = 0;
  pauseMs = 0;
  helperMs = 0;
  /** Full (mark-compact) collections: count, main-thread pause plus incremental steps, helper threads' marking and sweeping. */
  majors = 0;
  majorMs = 0;
  majorHelperMs = 0;
  private rest = '';

  /** Reads --trace-gc-nvp lines (`key=value` pairs; `gc=s` for a scavenge) as they are printed. */
  feed(chunk: Buffer): void {
    const lines = (this.rest + chunk.toString('utf8')).split('\n');
    this.rest = lines.pop() ?? '';
    if (!this.measuring) return;
    for (const line of lines) {
      const v = (k: string): number => Number(new RegExp(`(?:^|\\s)${k}=([\\d.]+)`).exec(line)?.[1] ?? 0);
      if (line.includes(' gc=mc ')) {
        this.majors++;
        this.majorMs += v('pause') + v('incremental');
        this.majorHelperMs += v('background.mark') + v('background.sweep') + v('background.evacuate.copy');
        continue;
      }
      if (!line.includes(' gc=s ')) continue;
      this.count++;
      this.allocated += v('allocated');
      this.survived += v('new_space_survived');
      this.promoted += v('promoted');
      this.pauseMs += v('pause');
      this.helperMs += v('background.scavenge.parallel');
    }
  }

  summary(requests: number): string {
    if (this.count === 0) return 'no young-generation collections seen';
    const pct = (x: number): string => `${((100 * x) / this.allocated).toFixed(1)} %`;
    return (
      `${this.count} young-generation collections: ${(this.allocated / requests / 1024).toFixed(1)} KB allocated per request, ` +
      `${pct(this.survived)} survived, ${pct(this.promoted)} promoted; ` +
      `${((1000 * this.pauseMs) / requests).toFixed(1)} ms main thread and ${((1000 * this.helperMs) / requests).toFixed(1)} ms helper threads per 1k; ` +
      `${this.majors} full collections: ${((1000 * this.majorMs) / requests).toFixed(1)} ms main thread and ${((1000 * this.majorHelperMs) / requests).toFixed(1)} ms helper threads per 1k`
    );
  }
}
const HEADERS = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' };

/** CPU ms of every process whose command line names this data directory (PostgreSQL's backends). */
function treeCpuMs(match: string): number {
  let sum = 0;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (!fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(match)) continue;
      sum += cpuMs(Number(pid));
    } catch {
      // gone between the listing and the read
    }
  }
  return sum;
}

async function bridge(
  name: string,
  bundle: string,
  mockUrl: string,
  dir: string,
  db: string | undefined,
  extra: Record<string, string>,
  nodeArgs: string[],
) {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AIBRIDGE_')) env[k] = v;
  Object.assign(env, {
    AIBRIDGE_ANTHROPIC_BASE_URL: mockUrl,
    AIBRIDGE_ANTHROPIC_API_KEY: 'sk-ant-bench-upstream',
    AIBRIDGE_LOG_LEVEL: 'warn',
    AIBRIDGE_CONNECTIONS_PER_ADDRESS: '0',
    // …and its one bench user's requests are every developer's: no per-user cap either.
    AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER: '0',
    ...(db ? { AIBRIDGE_DATABASE_URL: db } : {}),
    ...extra,
  });
  const proc = start(
    name,
    process.execPath,
    [
      ...(GC ? ['--trace-gc-nvp'] : []),
      ...nodeArgs,
      bundle,
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--data-dir',
      dir,
    ],
    {
      env,
      cwd: ROOT,
    },
  );
  const gc = new ScavengeTally();
  if (GC) proc.proc.stdout?.on('data', (c: Buffer) => gc.feed(c));
  const url = (await waitForLine(proc, /listening on (http:\/\/\S+)/, 30_000))[1] ?? '';
  const adminKey = fs.readFileSync(path.join(dir, 'admin.key'), 'utf8').trim();
  const post = async (p: string, body: unknown) => {
    const res = await fetch(url + p, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${name}: POST ${p}: ${res.status} ${await res.text()}`);
    return (await res.json()) as { key: string };
  };
  await post('/api/v1/users', { email: 'ab@bench.test', team: 'bench' });
  const { key } = await post('/api/v1/users/ab%40bench.test/keys', {});
  return {
    proc,
    gc,
    origin: url,
    adminKey,
    target: { name, origin: url, path: '/anthropic/v1/messages', headers: { ...HEADERS, 'x-api-key': key } },
  };
}

/** `aibridge_audit_write_seconds` as the share of records durable within each bucket's bound. */
async function auditWrites(origin: string, adminKey: string): Promise<string> {
  const res = await fetch(`${origin}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } });
  const buckets = [
    ...(await res.text()).matchAll(/^aibridge_audit_write_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm),
  ];
  const total = Number(buckets.at(-1)?.[2] ?? 0);
  if (total === 0) return 'none recorded';
  return buckets
    .filter((b) => b[1] !== '+Inf')
    .map((b) => `${Number(b[1]) * 1000} ms ${((100 * Number(b[2])) / total).toFixed(1)} %`)
    .join(', ');
}

/** Attaches strace's counter to every thread of pid; the function it answers stops it and reads its table. */
async function straceStart(pid: number, out: string): Promise<() => Promise<Map<string, number>>> {
  const proc = spawn('strace', ['-c', '-f', '-p', String(pid), '-o', out], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  onCleanup(() => proc.kill('SIGKILL'));
  // Listened for from the start: strace ends by itself when the process it traces does.
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  // strace says nothing once attached; its "Process N attached" lines come on stderr.
  let said = '';
  await new Promise<void>((resolve, reject) => {
    const fail = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new Error(`strace did not attach to ${pid}: ${said.trim()}`)),
      10_000,
    );
    proc.once('error', fail);
    void exited.then(() => fail(new Error(`strace ended before it attached to ${pid}: ${said.trim()}`)));
    proc.stderr.on('data', (c: Buffer) => {
      said += c.toString();
      if (said.includes('attached')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  await new Promise((r) => setTimeout(r, 200));
  return async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT');
    await exited;
    const counts = new Map<string, number>();
    // strace -c's table: % time, seconds, usecs/call, calls, [errors,] syscall.
    for (const line of fs.readFileSync(out, 'utf8').split('\n')) {
      const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/.exec(line);
      if (m && m[2] !== 'total') counts.set(m[2]!, Number(m[1]));
    }
    return counts;
  };
}

function addCounts(into: Map<string, number>, from: Map<string, number>): void {
  for (const [k, v] of from) into.set(k, (into.get(k) ?? 0) + v);
}

async function main(): Promise<void> {
  if (builds.length !== 2)
    throw new Error('usage: bench/ab.ts A.cjs B.cjs [--pg] [--rounds N] [--ms N] [--connections N]');
  installExitHandlers();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aibridge-ab-'));
  onCleanup(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const mock = startWorker('mock', path.join(BENCH, 'mock-upstream.ts'));
  const mockUrl = (await waitForLine(mock, /listening on (http:\/\/\S+)/, 30_000))[1] ?? '';
  const pg = PG ? await startPostgres({ durable: true }) : undefined;
  const sides: {
    label: string;
    proc: Child;
    target: Record<string, unknown>;
    db?: string;
    gc?: ScavengeTally;
    /** A bridge's: for its /metrics. */
    origin?: string;
    adminKey?: string;
  }[] = [];
  for (const [i, b] of builds.entries()) {
    if (b === 'floor') {
      // The bare proxy of `npm run bench`, as a side: the ratio issue 21's targets are judged by.
      const proc = startWorker('floor', path.join(BENCH, 'floor-proxy.ts'), [], [mockUrl]);
      const origin = (await waitForLine(proc, /listening on (http:\/\/\S+)/, 30_000))[1] ?? '';
      sides.push({
        label: `${'AB'[i]} bare proxy`,
        proc,
        target: { name: 'floor', origin, path: '/v1/messages', headers: HEADERS },
      });
      continue;
    }
    const extra = [
      ...Object.entries(SIDE_ENV[i]!).map(([k, v]) => ` ${k}=${v}`),
      ...SIDE_NODE[i]!.map((a) => ` ${a}`),
    ];
    const label = `${'AB'[i]} ${path.relative(process.cwd(), b)}${PG_B && i === 1 ? ' (PostgreSQL)' : ''}${extra.join('')}`;
    const db = pg && (!PG_B || i === 1) ? await pg.createDatabase(`ab_${i}`) : undefined;
    sides.push({
      label,
      db,
      ...(await bridge(
        `bridge${i}`,
        path.resolve(b),
        mockUrl,
        path.join(tmp, `b${i}`),
        db,
        SIDE_ENV[i]!,
        SIDE_NODE[i]!,
      )),
    });
  }
  const loadgen = startWorker('loadgen', path.join(BENCH, 'loadgen.ts'));
  const job =
    RATE > 0
      ? { kind: 'rate', body: BODY, rps: RATE, maxRequests: 200_000 }
      : { kind: 'closed', body: BODY, connections: CONNECTIONS, maxRequests: 200_000 };
  for (const s of sides) await call<JobResult>(loadgen, { ...job, durationMs: 2_000, target: s.target });
  const pgMatch = pg ? 'postgres' : '';
  const tally = sides.map(() => ({
    ok: 0,
    ms: 0,
    cpu: 0,
    user: 0,
    db: 0,
    threads: new Map<string, number>(),
    latency: [] as number[],
  }));
  const syscalls = sides.map(() => new Map<string, number>());
  for (let r = 0; r < ROUNDS; r++) {
    for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) {
      const s = sides[i]!;
      // At a fixed rate, each round starts after a spell of the same rate: the other side ran meanwhile.
      if (RATE > 0) await call<JobResult>(loadgen, { ...job, durationMs: 2_000, target: s.target });
      const c0 = cpuMs(s.proc.proc.pid!);
      const u0 = cpuSplitMs(s.proc.proc.pid!).user;
      const th0 = threadCpuMs(s.proc.proc.pid!);
      const d0 = pg ? treeCpuMs(pgMatch) : 0;
      if (s.gc) s.gc.measuring = true;
      const trace = SYSCALLS
        ? await straceStart(s.proc.proc.pid!, path.join(tmp, `strace-${i}-${r}`))
        : undefined;
      const res = await call<JobResult>(loadgen, { ...job, durationMs: MS, target: s.target });
      if (trace) addCounts(syscalls[i]!, await trace());
      if (s.gc) s.gc.measuring = false;
      const t = tally[i]!;
      t.cpu += cpuMs(s.proc.proc.pid!) - c0;
      t.user += cpuSplitMs(s.proc.proc.pid!).user - u0;
      for (const [name, ms] of threadCpuMs(s.proc.proc.pid!))
        t.threads.set(name, (t.threads.get(name) ?? 0) + ms - (th0.get(name) ?? 0));
      t.db += pg ? treeCpuMs(pgMatch) - d0 : 0;
      t.ok += res.ok;
      t.ms += res.elapsedMs;
      // A loop, not push(...): a long round's samples overflow the call stack as arguments.
      for (const l of res.latency) t.latency.push(l);
      process.stderr.write(
        `round ${r + 1} ${s.label}: ${((1000 * res.ok) / res.elapsedMs).toFixed(0)} rps, ${res.errors} errors\n`,
      );
    }
  }
  for (const [i, s] of sides.entries()) {
    const t = tally[i]!;
    const db = pg ? `, database ${((1000 * t.db) / t.ok).toFixed(0)} ms per 1k` : '';
    const threads = [...t.threads]
      .sort((a, b) => b[1] - a[1])
      .map(([name, ms]) => `${name.trim()} ${((1000 * ms) / t.ok).toFixed(0)}`)
      .join(', ');
    process.stdout.write(
      `${s.label}: ${((1000 * t.ok) / t.ms).toFixed(0)} rps, bridge ${((1000 * t.cpu) / t.ok).toFixed(0)} ms per 1k${db}\n` +
        `  by thread, ms per 1k: ${threads}; user ${((1000 * t.user) / t.ok).toFixed(0)}, system ${((1000 * (t.cpu - t.user)) / t.ok).toFixed(0)}\n` +
        (GC && s.gc ? `  ${s.gc.summary(t.ok)}\n` : ''),
    );
    if (SYSCALLS && t.ok > 0) {
      const counts = [...syscalls[i]!].sort((a, b) => b[1] - a[1]);
      const total = counts.reduce((n, [, c]) => n + c, 0);
      process.stdout.write(
        `  system calls per request: ${(total / t.ok).toFixed(2)}: ${counts
          .filter(([, c]) => c / t.ok >= 0.01)
          .map(([name, c]) => `${name} ${(c / t.ok).toFixed(2)}`)
          .join(', ')}\n`,
      );
    }
    if (RATE > 0) {
      const p = percentiles(t.latency);
      const q = (v: number) => v.toFixed(3);
      process.stdout.write(
        `  at ${RATE} rps: p50 ${q(p.p50)}, p99 ${q(p.p99)}, p99.9 ${q(p.p999)} ms (${t.latency.length} samples)\n`,
      );
    }
    // The bare proxy records nothing. Over the whole run, warm-up included.
    if (s.origin && s.adminKey)
      process.stdout.write(`  records durable within: ${await auditWrites(s.origin, s.adminKey)}\n`);
  }
  await stop(loadgen);
  for (const s of sides) await stop(s.proc);
  await stop(mock);
  cleanupNow();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    cleanupNow();
    process.exit(1);
  },
);
