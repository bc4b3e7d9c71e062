import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { AnthropicMock } from './anthropic-mock';
import { OPENAI_UPSTREAM_KEY, OpenAIMock } from './openai-mock';
import { createMembers, spawnBridge } from './soak-driver';

/**
 * The hostile soak (docs/security.md#hostile-soak): members with valid keys do everything a member
 * can to slow the bridge down for everyone else, while normal members stream requests through it.
 * One bridge process, two phases of equal length: normal members alone (the baseline), then the
 * same normal members next to the hostile ones. Every loop is bounded in count and in time, every
 * socket is closed at the end, and hostile traffic only ever goes to the bridge on 127.0.0.1.
 */

/** What hostile members do; each runs on its own for the whole hostile phase. */
export const ATTACKS = [
  /** Requests whose model name is 500 KB, each a new name (labels, records, live events). */
  'long-model',
  /** Hundreds of live-event WebSockets that never read (slow consumers). */
  'websockets',
  /** Raw sockets that send request headers a byte at a time and never finish them. */
  'slowloris',
  /** Raw sockets that send complete headers and then trickle the body. */
  'slow-body',
  /** Prompts that are worst cases for secret redaction. */
  'redaction',
  /** Request bodies nested tens of thousands of levels deep. */
  'deep-json',
] as const;
export type Attack = (typeof ATTACKS)[number];

/** Normal members come from this loopback address, hostile ones from 127.0.0.1: a per-address cap must tell them apart. */
const NORMAL_ADDRESS = '127.0.0.2';
const HOSTILE_ADDRESS = '127.0.0.1';

export interface HostileSoakOptions {
  /** Length of each phase. */
  phaseMs: number;
  /** Normal members, each sending one request after another. */
  normalUsers: number;
  dataDir: string;
  /** Hostile members (keys) sharing the attacks. */
  hostileUsers: number;
  /** The attacks to run (default all). */
  attacks?: readonly Attack[];
  /** Live-event WebSockets opened by hostile members. */
  websockets: number;
  /** Raw sockets trickling headers, and as many trickling bodies. */
  slowSockets: number;
  /** Most requests each request-sending attack makes in the phase. */
  maxHostileRequests: number;
  /** A normal request taking longer than this counts as failed. */
  requestTimeoutMs: number;
  log?: (line: string) => void;
}

export interface PhaseResult {
  requests: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** HTTP status (or `error:<code>` for a request that got no response) → count. */
  statuses: Record<string, number>;
}

/** What one attack did: requests sent and how the bridge answered, sockets opened and closed on it. */
export interface AttackTally {
  sent: number;
  outcomes: Record<string, number>;
}

export interface HostileSoakResult {
  baseline: PhaseResult;
  hostile: PhaseResult;
  attacks: Partial<Record<Attack, AttackTally>>;
  /** The bridge's exit code or signal if it died during the run. */
  bridgeExit: string | null;
}

/** The p-th percentile (0–100) of `values`, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * How much slower the normal members' p99 may be next to hostile ones: twice the baseline, or the
 * baseline plus `floorMs`, whichever is larger. The floor keeps a fast baseline (a few ms on
 * loopback) from turning scheduling noise on a loaded machine into a failure.
 */
export function p99Allowance(baselineP99Ms: number, floorMs: number): number {
  return Math.max(2 * baselineP99Ms, baselineP99Ms + floorMs);
}

/**
 * What is wrong with a run, as sentences (empty when it passed): the bridge died, a normal member
 * was refused or got no answer, or their p99 grew past `p99Allowance(baseline, floorMs)`.
 */
export function hostileSoakProblems(r: HostileSoakResult, floorMs: number): string[] {
  const problems: string[] = [];
  if (r.bridgeExit !== null) problems.push(`the bridge died (${r.bridgeExit})`);
  const refused = (p: PhaseResult) =>
    Object.entries(p.statuses)
      .filter(([s]) => s !== '200')
      .map(([s, n]) => `${n}× ${s}`);
  const base = refused(r.baseline);
  if (base.length > 0) problems.push(`normal members alone were refused: ${base.join(', ')}`);
  const next = refused(r.hostile);
  if (next.length > 0) problems.push(`normal members next to hostile ones were refused: ${next.join(', ')}`);
  const allowed = p99Allowance(r.baseline.p99Ms, floorMs);
  if (!(r.hostile.p99Ms <= allowed)) {
    problems.push(
      `normal members' p99 went from ${r.baseline.p99Ms} ms alone to ${r.hostile.p99Ms} ms next to hostile ones ` +
        `(allowed ${allowed} ms; max ${r.hostile.maxMs} ms; ${r.hostile.requests} requests vs ${r.baseline.requests})`,
    );
  }
  for (const [a, t] of Object.entries(r.attacks)) {
    if (t.sent === 0) problems.push(`the ${a} attack never ran`);
  }
  return problems;
}

function count(into: Record<string, number>, key: string): void {
  into[key] = (into[key] ?? 0) + 1;
}

interface Target {
  host: string;
  port: number;
}

/** A request body and the provider route it goes to. */
interface Sent {
  path: string;
  body: Buffer;
}

const MESSAGES = '/anthropic/v1/messages';
const CHAT = '/openai/v1/chat/completions';

/** POSTs a body with a bridge key and reads the whole answer; resolves to its status or `error:<code>`. */
function post(
  target: Target,
  agent: http.Agent,
  key: string,
  sent: Sent,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve) => {
    const req = http.request(
      {
        ...target,
        agent,
        method: 'POST',
        path: sent.path,
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
          'content-length': sent.body.length,
        },
        timeout: timeoutMs,
      },
      (res) => {
        res.on('data', () => {});
        res.on('end', () => resolve(String(res.statusCode)));
        res.on('error', (err: NodeJS.ErrnoException) => resolve(`error:${err.code ?? err.message}`));
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`error:${err.code ?? err.message}`));
    req.end(sent.body);
  });
}

/** Normal members: each sends small requests, half of them streamed, one after another until `until`. */
async function normalTraffic(
  target: Target,
  keys: readonly string[],
  until: number,
  timeoutMs: number,
): Promise<PhaseResult> {
  const agent = new http.Agent({ keepAlive: true, localAddress: NORMAL_ADDRESS });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  // Bounded in count too: a bridge answering instantly must not turn the loop into a spin.
  const maxPerUser = 100_000;
  try {
    await Promise.all(
      keys.map(async (key, u) => {
        for (let i = 0; i < maxPerUser && Date.now() < until; i++) {
          const body = Buffer.from(
            JSON.stringify({
              model: 'claude-sonnet-4-5',
              max_tokens: 32,
              stream: i % 2 === 0,
              messages: [{ role: 'user', content: `normal member ${u}, request ${i}` }],
            }),
          );
          const t0 = performance.now();
          const status = await post(target, agent, key, { path: MESSAGES, body }, timeoutMs);
          latencies.push(performance.now() - t0);
          count(statuses, status);
        }
      }),
    );
  } finally {
    agent.destroy();
  }
  return {
    requests: latencies.length,
    p50Ms: Math.round(percentile(latencies, 50)),
    p99Ms: Math.round(percentile(latencies, 99)),
    maxMs: Math.round(Math.max(...latencies)),
    statuses,
  };
}

/** Every socket a hostile member opens, so the run can close them all whatever happens. */
class Sockets {
  private readonly open = new Set<{ destroy(): void }>();
  add<T extends { destroy(): void }>(s: T, closed: (cb: () => void) => void): T {
    this.open.add(s);
    closed(() => this.open.delete(s));
    return s;
  }
  closeAll(): void {
    for (const s of this.open) s.destroy();
    this.open.clear();
  }
}

/**
 * Sends at most `max` requests, two at a time, spread over the time left until `until` so the
 * attack lasts the whole phase even when the bridge answers it at once.
 */
async function requestFlood(
  target: Target,
  agent: http.Agent,
  keys: readonly string[],
  until: number,
  max: number,
  timeoutMs: number,
  sent: (i: number) => Sent,
): Promise<AttackTally> {
  const tally: AttackTally = { sent: 0, outcomes: {} };
  const start = Date.now();
  const slot = (i: number): number => start + ((until - start) * i) / max;
  let next = 0;
  await Promise.all(
    [0, 1].map(async () => {
      while (next < max && Date.now() < until) {
        const i = next++;
        await sleep(Math.max(0, slot(i) - Date.now()));
        if (Date.now() >= until) break;
        tally.sent++;
        count(tally.outcomes, await post(target, agent, keys[i % keys.length]!, sent(i), timeoutMs));
      }
    }),
  );
  return tally;
}

/** Opens `n` live-event WebSockets (20 at a time) that stop reading once open, and holds them until `until`. */
async function websockets(
  url: string,
  keys: readonly string[],
  n: number,
  until: number,
  sockets: Sockets,
): Promise<AttackTally> {
  const tally: AttackTally = { sent: 0, outcomes: {} };
  const wsUrl = `${url.replace(/^http/, 'ws')}/api/v1/events`;
  let next = 0;
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < n && Date.now() < until) {
        const i = next++;
        tally.sent++;
        const ws = new WebSocket(wsUrl, {
          headers: { authorization: `Bearer ${keys[i % keys.length]}` },
          localAddress: HOSTILE_ADDRESS,
          handshakeTimeout: 10_000,
        });
        sockets.add({ destroy: () => ws.terminate() }, (cb) => ws.once('close', cb));
        const outcome = await new Promise<string>((resolve) => {
          ws.once('open', () => resolve('open'));
          ws.once('unexpected-response', (_req, res) => {
            resolve(`refused:${res.statusCode}`);
            ws.terminate();
          });
          ws.on('error', (err: NodeJS.ErrnoException) => resolve(`error:${err.code ?? err.message}`));
        });
        count(tally.outcomes, outcome);
        // A slow consumer: the bridge's buffer for it fills while it reads nothing.
        if (outcome === 'open') ws.pause();
        ws.once('close', (code) => {
          if (Date.now() < until) count(tally.outcomes, `closed-by-bridge:${code}`);
        });
      }
    }),
  );
  return tally;
}

/** Connections each trickling lane opens at most: a closed one is replaced, as a real slowloris does. */
const MAX_TRICKLE_CONNECTIONS_PER_LANE = 20;

/**
 * `n` lanes of raw sockets that send `prefix`, then one byte of `drip` per `everyMs`, until `until`.
 * Counts the connections the bridge closed before the end (what a header or body timeout does);
 * a closed one is replaced by a new one.
 */
async function trickle(
  target: Target,
  n: number,
  until: number,
  prefix: string,
  drip: string,
  everyMs: number,
  sockets: Sockets,
): Promise<AttackTally> {
  const tally: AttackTally = { sent: 0, outcomes: {} };
  const one = async (): Promise<void> => {
    const socket = net.connect({ ...target, localAddress: HOSTILE_ADDRESS });
    socket.on('data', () => {});
    socket.on('error', (err: NodeJS.ErrnoException) => count(tally.outcomes, `error:${err.code}`));
    sockets.add(socket, (cb) => socket.once('close', cb));
    let closedAt = 0;
    socket.once('close', () => {
      closedAt = Date.now();
    });
    tally.sent++;
    socket.write(prefix);
    for (let i = 0; Date.now() < until && !closedAt; i++) {
      await sleep(everyMs);
      if (!closedAt) socket.write(drip[i % drip.length]!);
    }
    // Closed before the phase ended: the bridge's doing (the run closes the rest after it).
    count(tally.outcomes, closedAt && closedAt < until ? 'closed-by-bridge' : 'held-to-the-end');
  };
  await Promise.all(
    Array.from({ length: n }, async () => {
      for (let c = 0; c < MAX_TRICKLE_CONNECTIONS_PER_LANE && Date.now() < until; c++) {
        await one();
        // A refused connection must not turn the lane into a spin.
        if (Date.now() < until) await sleep(everyMs);
      }
    }),
  );
  return tally;
}

/** `[[[…]]]`, `depth` levels. */
function nested(depth: number): string {
  return `${'['.repeat(depth)}${']'.repeat(depth)}`;
}

/** Prompts that make a backtracking redaction pattern quadratic. */
const REDACTION_WORST_CASES: readonly string[] = [
  // An .env-style name that never reaches its `=`.
  'PWD'.repeat(21_800),
  // Long runs of secret-like tokens, spaced and unspaced.
  Array.from(
    { length: 1500 },
    (_, i) =>
      [
        `sk-ant-api03-${'A'.repeat(20)}${i}`,
        `ghp_${'b'.repeat(36)}`,
        `AKIA${'C'.repeat(16)}`,
        `eyJ${'d'.repeat(12)}.eyJ${'e'.repeat(12)}`,
        `xoxb-${'1'.repeat(12)}`,
      ][i % 5],
  ).join(' '),
  'eyJ-'.repeat(16_000),
  'sk-ant-'.repeat(9_000),
  `${'a.'.repeat(30_000)}`,
  `postgres://user:${'p'.repeat(60_000)}`,
];

/** Runs one hostile soak and returns the normal members' latency in each phase and what each attack did. */
export async function hostileSoak(opts: HostileSoakOptions): Promise<HostileSoakResult> {
  const attacks = new Set(opts.attacks ?? ATTACKS);
  const log = opts.log ?? (() => {});
  const mock = await new AnthropicMock().start();
  const openai = await new OpenAIMock().start();
  const sockets = new Sockets();
  let child: ChildProcess | undefined;
  let bridgeExit: string | null = null;
  const hostileAgent = new http.Agent({ keepAlive: true, maxSockets: 8, localAddress: HOSTILE_ADDRESS });
  // The mock keeps every request it saw; hostile bodies are large, so forget them as they come.
  const forget = setInterval(() => {
    mock.requests.length = 0;
    openai.requests.length = 0;
  }, 1000);
  try {
    const bridge = await spawnBridge(mock.url, opts.dataDir, {
      AIBRIDGE_OPENAI_BASE_URL: openai.url,
      AIBRIDGE_OPENAI_API_KEY: OPENAI_UPSTREAM_KEY,
    });
    child = bridge.child;
    child.once('exit', (code, signal) => {
      bridgeExit = signal ?? String(code);
    });
    const target = { host: '127.0.0.1', port: Number(new URL(bridge.url).port) };
    const normal = await createMembers(bridge.url, opts.dataDir, 'normal', opts.normalUsers);
    const hostile = await createMembers(bridge.url, opts.dataDir, 'hostile', opts.hostileUsers);

    // Warm-up: the first requests pay for connection set-up and lazy initialisation.
    await normalTraffic(target, normal, Date.now() + Math.min(2000, opts.phaseMs / 4), opts.requestTimeoutMs);
    log('baseline: normal members alone');
    const baseline = await normalTraffic(target, normal, Date.now() + opts.phaseMs, opts.requestTimeoutMs);
    log(`baseline ${JSON.stringify(baseline)}`);

    log(`hostile: normal members next to ${[...attacks].join(', ')}`);
    const until = Date.now() + opts.phaseMs;
    const running: Promise<[Attack, AttackTally]>[] = [];
    const run = (a: Attack, p: () => Promise<AttackTally>): void => {
      if (attacks.has(a)) running.push(p().then((t) => [a, t]));
    };
    const max = opts.maxHostileRequests;
    run('websockets', () => websockets(bridge.url, hostile, opts.websockets, until, sockets));
    run('slowloris', () =>
      trickle(
        target,
        opts.slowSockets,
        until,
        'POST /anthropic/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-',
        'abcdefghijklmnopqrstuvwxyz',
        500,
        sockets,
      ),
    );
    run('slow-body', () =>
      trickle(
        target,
        opts.slowSockets,
        until,
        [
          'POST /anthropic/v1/messages HTTP/1.1',
          'Host: 127.0.0.1',
          `x-api-key: ${hostile[0]}`,
          'anthropic-version: 2023-06-01',
          'content-type: application/json',
          'content-length: 100000',
          '',
          '{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"',
        ].join('\r\n'),
        'x',
        500,
        sockets,
      ),
    );
    const longName = 'm'.repeat(500_000);
    run('long-model', () =>
      requestFlood(target, hostileAgent, hostile, until, max, opts.requestTimeoutMs, (i) => ({
        path: MESSAGES,
        body: Buffer.from(
          JSON.stringify({
            model: `${i}-${longName}`,
            max_tokens: 8,
            stream: i % 2 === 0,
            messages: [{ role: 'user', content: 'hi' }],
          }),
        ),
      })),
    );
    run('redaction', () =>
      requestFlood(target, hostileAgent, hostile, until, max, opts.requestTimeoutMs, (i) => ({
        path: MESSAGES,
        body: Buffer.from(
          JSON.stringify({
            model: 'claude-sonnet-4-5',
            max_tokens: 8,
            messages: [{ role: 'user', content: REDACTION_WORST_CASES[i % REDACTION_WORST_CASES.length] }],
          }),
        ),
      })),
    );
    // Deep enough to overflow any recursive walk (JSON.stringify gives up near 5 000 levels), small
    // enough (40 KB) that parsing it is cheap: the attack is the nesting, not the size.
    const deep = nested(20_000);
    run('deep-json', () =>
      requestFlood(target, hostileAgent, hostile, until, max, opts.requestTimeoutMs, (i) =>
        // Messages passes its body through; a streamed Chat Completions request is re-serialised
        // (the bridge asks for usage), so the nesting reaches JSON.stringify there.
        i % 2 === 0
          ? {
              path: MESSAGES,
              body: Buffer.from(
                `{"model":"claude-sonnet-4-5","max_tokens":8,"metadata":{"user_id":"h${i}"},` +
                  `"messages":[{"role":"user","content":[{"type":"text","text":"hi","x":${deep}}]}]}`,
              ),
            }
          : {
              path: CHAT,
              body: Buffer.from(
                `{"model":"gpt-4o","stream":true,"metadata":{"x":${deep}},"messages":[{"role":"user","content":"hi"}]}`,
              ),
            },
      ),
    );
    // The hostile members get a head start, so the normal members meet them in full swing.
    await sleep(Math.min(1000, opts.phaseMs / 10));
    const hostilePhase = await normalTraffic(target, normal, until, opts.requestTimeoutMs);
    log(`hostile ${JSON.stringify(hostilePhase)}`);
    // The sockets held open are the attack: close them now, then collect the tallies.
    sockets.closeAll();
    const tallies = Object.fromEntries(await Promise.all(running)) as Partial<Record<Attack, AttackTally>>;
    for (const [a, t] of Object.entries(tallies)) log(`${a} ${JSON.stringify(t)}`);
    return { baseline, hostile: hostilePhase, attacks: tallies, bridgeExit };
  } finally {
    clearInterval(forget);
    sockets.closeAll();
    hostileAgent.destroy();
    child?.kill('SIGKILL');
    await openai.stop();
    await mock.stop();
  }
}
