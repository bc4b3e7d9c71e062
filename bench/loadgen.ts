/**
 * The load generator: its own process, so its CPU is not the proxies'. bench/run.ts sends it jobs
 * over IPC; every job is bounded by a duration and a request count. Latency is timed from the call
 * that sends a request to the last byte of its response (and, for streams, to the first byte and
 * between events), with `performance.now()` (microsecond resolution).
 */
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { serveCalls } from './lib/procs';
import { HOLD_MODEL, monotonicUs, STAMP, STAMP_DIGITS } from './lib/wire';

/** One way to the upstream: direct, through the bridge, through Portkey. */
export interface Target {
  name: string;
  origin: string;
  path: string;
  headers: Record<string, string>;
  /** The client's wire: Anthropic Messages (the default), Gemini's generateContent or OpenAI's Chat Completions. */
  wire?: 'gemini' | 'chat';
  /** Where streams go when the API streams at another path (Gemini's `:streamGenerateContent?alt=sse`). */
  streamPath?: string;
}

/** `agent`: a long agent turn (about 60 KB, Claude Code's shape), answered as JSON. */
export type Body = 'json' | 'stream' | 'hold' | 'agent';

export interface Sample {
  ok: boolean;
  status: number;
  /** Send to last byte, ms. */
  total: number;
  /** Send to first body byte, ms. */
  ttfb: number;
  /** Mean time between SSE events as they arrived, ms (streams only). */
  gap: number;
  /** Mean time from the mock writing a stamped event to it arriving here, ms (streams only). */
  eventDelay: number;
  events: number;
  bytes: number;
  error?: string;
}

/** What a timed job returns: raw samples (ms, rounded to µs) so runs can be pooled. */
export interface JobResult {
  sent: number;
  ok: number;
  errors: number;
  firstError: string | null;
  elapsedMs: number;
  latency: number[];
  ttfb: number[];
  gap: number[];
  eventDelay: number[];
  events: number[];
}

/** The same turn in Gemini's generateContent shape (the model is in the path). */
function geminiBody(): Buffer {
  return Buffer.from(
    JSON.stringify({
      systemInstruction: {
        parts: [{ text: 'You are a helpful coding assistant. Answer briefly and precisely. '.repeat(6) }],
      },
      contents: [
        {
          role: 'user',
          parts: [{ text: 'What does this function return when the list is empty? '.repeat(4) }],
        },
        { role: 'model', parts: [{ text: 'It returns undefined, because the loop body never runs.' }] },
        {
          role: 'user',
          parts: [{ text: 'Change it to return null instead, and explain why that is clearer.' }],
        },
      ],
      generationConfig: { maxOutputTokens: 1024 },
    }),
  );
}

const GEMINI_BODY = geminiBody();

/** The same turn as OpenAI Chat Completions (streams ask for usage, as agents do). */
function chatBody(stream: boolean): Buffer {
  return Buffer.from(
    JSON.stringify({
      model: 'gpt-4o',
      max_tokens: 1024,
      stream,
      ...(stream ? { stream_options: { include_usage: true } } : {}),
      messages: [
        {
          role: 'system',
          content: 'You are a helpful coding assistant. Answer briefly and precisely. '.repeat(6),
        },
        { role: 'user', content: 'What does this function return when the list is empty? '.repeat(4) },
        { role: 'assistant', content: 'It returns undefined, because the loop body never runs.' },
        { role: 'user', content: 'Change it to return null instead, and explain why that is clearer.' },
      ],
    }),
  );
}

const CHAT_BODIES: Record<Body, Buffer> = {
  json: chatBody(false),
  stream: chatBody(true),
  hold: chatBody(true),
  // Only the Anthropic paths are sent agent turns.
  agent: chatBody(false),
};

const bodies: Record<Body, Buffer> = {
  json: requestBody(false, 'claude-sonnet-4-5'),
  stream: requestBody(true, 'claude-sonnet-4-5'),
  hold: requestBody(true, HOLD_MODEL),
  agent: agentBody(),
};

/**
 * A coding agent's turn in the middle of a session, as Claude Code sends it: its session in
 * `metadata.user_id`, a long system prompt and twenty tools, ten earlier messages of file reads
 * (code in tool results), cache markers on the system prompt and the newest tool result. What the
 * bridge parses, fingerprints and records on real traffic; the 1 KB turn above is its floor.
 */
function agentBody(): Buffer {
  const code = Array.from(
    { length: 60 },
    (_, i) =>
      `  const r${i} = await fetch("https://example.com/api/${i}", { method: "POST", body: JSON.stringify({ a: ${i} }) }); // line ${i}\n`,
  ).join('');
  const turns = 10;
  const messages: unknown[] = Array.from({ length: turns }, (_, i) =>
    i % 2 === 0
      ? {
          role: 'user',
          content: [
            {
              type: 'tool_result',
              tool_use_id: `toolu_${i}`,
              content: code,
              ...(i === turns - 2 ? { cache_control: { type: 'ephemeral' } } : {}),
            },
          ],
        }
      : {
          role: 'assistant',
          content: [
            { type: 'text', text: 'Let me look at that file.' },
            { type: 'tool_use', id: `toolu_${i}`, name: 'Read', input: { file_path: `/src/file${i}.ts` } },
          ],
        },
  );
  messages.push({ role: 'user', content: [{ type: 'text', text: 'Now fix the bug in the retry loop.' }] });
  return Buffer.from(
    JSON.stringify({
      model: 'claude-sonnet-4-5',
      max_tokens: 32000,
      stream: false,
      metadata: { user_id: 'user_bench_account__session_0f3c1a52-6a7e-4c55-9d7b-3f0e2b1c9a11' },
      system: [
        { type: 'text', text: 'You are a coding agent. '.repeat(350), cache_control: { type: 'ephemeral' } },
      ],
      tools: Array.from({ length: 20 }, (_, i) => ({
        name: `Tool${i}`,
        description: 'Reads, edits or runs something in the workspace. '.repeat(12),
        input_schema: {
          type: 'object',
          properties: { path: { type: 'string', description: 'a path' }, n: { type: 'number' } },
          required: ['path'],
        },
      })),
      messages,
    }),
  );
}

/** A small Messages request, about 1 KB, as an agent's short turn would be. */
function requestBody(stream: boolean, model: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      model,
      max_tokens: 1024,
      stream,
      system: 'You are a helpful coding assistant. Answer briefly and precisely. '.repeat(6),
      messages: [
        { role: 'user', content: 'What does this function return when the list is empty? '.repeat(4) },
        { role: 'assistant', content: 'It returns undefined, because the loop body never runs.' },
        { role: 'user', content: 'Change it to return null instead, and explain why that is clearer.' },
      ],
    }),
  );
}

const pools = new Map<string, Pool>();

function poolFor(origin: string): Pool {
  let p = pools.get(origin);
  if (!p) {
    p = new Pool(origin, { connections: 256, pipelining: 1, keepAliveTimeout: 30_000 });
    pools.set(origin, p);
  }
  return p;
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;

/** One request, timed; never throws. */
async function once(pool: Pool, t: Target, body: Body, onFirstByte?: () => void): Promise<Sample> {
  const t0 = performance.now();
  let ttfb = 0;
  let firstEvent = 0;
  let lastEvent = 0;
  let events = 0;
  let bytes = 0;
  let status = 0;
  let delaySum = 0;
  let delays = 0;
  // `json` and `agent` are whole answers; the others are SSE streams, read event by event.
  const streamed = body === 'stream' || body === 'hold';
  try {
    const res = await pool.request({
      path: streamed ? (t.streamPath ?? t.path) : t.path,
      method: 'POST',
      headers: t.headers,
      body: t.wire === 'gemini' ? GEMINI_BODY : t.wire === 'chat' ? CHAT_BODIES[body] : bodies[body],
    });
    status = res.statusCode;
    /** The part of the last event not yet complete. */
    let partial: Buffer | null = null;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      const now = performance.now();
      const nowUs = monotonicUs();
      if (ttfb === 0) {
        ttfb = now - t0;
        onFirstByte?.();
      }
      bytes += chunk.length;
      if (!streamed) continue;
      // SSE events end with a blank line, which may straddle two chunks.
      const buf: Buffer = partial ? Buffer.concat([partial, chunk]) : chunk;
      let from = 0;
      let found = 0;
      for (let end = buf.indexOf('\n\n', from); end !== -1; end = buf.indexOf('\n\n', from)) {
        const s = buf.indexOf(STAMP, from);
        if (s !== -1 && s < end) {
          const at = s + STAMP.length;
          delaySum += nowUs - Number(buf.toString('latin1', at, at + STAMP_DIGITS));
          delays++;
        }
        found++;
        from = end + 2;
      }
      partial = from < buf.length ? buf.subarray(from) : null;
      if (found > 0) {
        if (events === 0) firstEvent = now;
        lastEvent = now;
        events += found;
      }
    }
    const total = performance.now() - t0;
    const gap = events > 1 ? (lastEvent - firstEvent) / (events - 1) : 0;
    const eventDelay = delays > 0 ? delaySum / delays / 1000 : 0;
    const ok = status === 200 && (!streamed || events > 0);
    return {
      ok,
      status,
      total,
      ttfb,
      gap,
      eventDelay,
      events,
      bytes,
      ...(ok ? {} : { error: `HTTP ${status}` }),
    };
  } catch (err) {
    return {
      ok: false,
      status,
      total: performance.now() - t0,
      ttfb,
      gap: 0,
      eventDelay: 0,
      events,
      bytes,
      error: (err as Error).message,
    };
  }
}

function collector(): { add(s: Sample): void; result(elapsedMs: number): JobResult } {
  const r: JobResult = {
    sent: 0,
    ok: 0,
    errors: 0,
    firstError: null,
    elapsedMs: 0,
    latency: [],
    ttfb: [],
    gap: [],
    eventDelay: [],
    events: [],
  };
  return {
    add(s) {
      r.sent++;
      if (!s.ok) {
        r.errors++;
        r.firstError ??= s.error ?? `HTTP ${s.status}`;
        return;
      }
      r.ok++;
      r.latency.push(r3(s.total));
      r.ttfb.push(r3(s.ttfb));
      if (s.events > 0) {
        r.gap.push(r3(s.gap));
        r.eventDelay.push(r3(s.eventDelay));
        r.events.push(s.events);
      }
    },
    result(elapsedMs) {
      r.elapsedMs = elapsedMs;
      return r;
    },
  };
}

/** Open loop at a fixed rate: requests go out on schedule whether or not earlier ones are done. */
async function fixedRate(
  t: Target,
  body: Body,
  rps: number,
  durationMs: number,
  max: number,
): Promise<JobResult> {
  const pool = poolFor(t.origin);
  const c = collector();
  const interval = 1000 / rps;
  const start = performance.now();
  const end = start + durationMs;
  const inFlight = new Set<Promise<void>>();
  let next = start;
  let issued = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      while (next <= now && next < end && issued < max) {
        issued++;
        next += interval;
        // Bounded: a stalled target gets no more than 2,000 requests piled on it.
        if (inFlight.size >= 2_000) {
          c.add({
            ok: false,
            status: 0,
            total: 0,
            ttfb: 0,
            gap: 0,
            eventDelay: 0,
            events: 0,
            bytes: 0,
            error: 'backlog full',
          });
          continue;
        }
        const p: Promise<void> = once(pool, t, body).then((s) => {
          c.add(s);
          inFlight.delete(p);
        });
        inFlight.add(p);
      }
      if (next >= end || issued >= max) {
        resolve();
        return;
      }
      setTimeout(tick, Math.max(0, next - performance.now()));
    };
    tick();
  });
  await Promise.all(inFlight);
  return c.result(performance.now() - start);
}

/** Closed loop: `connections` clients, each sending its next request as soon as the last is done. */
async function closedLoop(
  t: Target,
  body: Body,
  connections: number,
  durationMs: number,
  max: number,
): Promise<JobResult> {
  const pool = poolFor(t.origin);
  const c = collector();
  const start = performance.now();
  const end = start + durationMs;
  let issued = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < end && issued < max) {
      issued++;
      c.add(await once(pool, t, body));
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  return c.result(performance.now() - start);
}

/**
 * Opens `count` streams that the mock holds open, reports once all have their first bytes, then
 * waits for them to finish (after the bench releases them).
 */
async function hold(
  t: Target,
  count: number,
  openTimeoutMs: number,
  progress: (p: Record<string, unknown>) => void,
): Promise<{ opened: number; completed: number; errors: number; firstError: string | null; openMs: number }> {
  const pool = new Pool(t.origin, { connections: count, pipelining: 1 });
  const start = performance.now();
  let opened = 0;
  let reported = false;
  const report = (): void => {
    if (reported) return;
    reported = true;
    progress({ opened, openMs: performance.now() - start });
  };
  const timer = setTimeout(report, openTimeoutMs);
  const all: Promise<Sample>[] = [];
  // Ramp up in steps so the listen backlog is not the thing measured.
  for (let i = 0; i < count; i++) {
    all.push(
      once(pool, t, 'hold', () => {
        opened++;
        if (opened === count) report();
      }),
    );
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 20));
  }
  const samples = await Promise.all(all);
  clearTimeout(timer);
  report();
  await pool.close();
  const failed = samples.filter((s) => !s.ok);
  return {
    opened,
    completed: samples.length - failed.length,
    errors: failed.length,
    firstError: failed[0]?.error ?? null,
    openMs: performance.now() - start,
  };
}

serveCalls(async (msg, progress) => {
  const t = msg.target as Target;
  const body = (msg.body as Body | undefined) ?? 'json';
  switch (msg.kind) {
    case 'probe': {
      const s = await once(poolFor(t.origin), t, body);
      return s;
    }
    case 'rate':
      return fixedRate(t, body, Number(msg.rps), Number(msg.durationMs), Number(msg.maxRequests));
    case 'closed':
      return closedLoop(t, body, Number(msg.connections), Number(msg.durationMs), Number(msg.maxRequests));
    case 'hold':
      return hold(t, Number(msg.count), Number(msg.openTimeoutMs), progress);
    default:
      throw new Error(`unknown job ${String(msg.kind)}`);
  }
});
