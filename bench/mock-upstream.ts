/**
 * The upstream for the bench: answers the Anthropic Messages API at once, from bytes prepared at
 * start, as Anthropic serves it (`/v1/messages`), as Vertex AI does (`…/models/{m}:rawPredict` and
 * `:streamRawPredict`, the same bytes; `POST /token` is the OAuth2 token endpoint of the bench's
 * service account) and as Bedrock does (`/model/{id}/invoke`, and `/invoke-with-response-stream`
 * whose events go out as event-stream frames, encoded by the AWS SDK's codec as they are written),
 * and as the Gemini API does (`/v1beta/models/{m}:generateContent`, `:streamGenerateContent` with
 * as many `data:` chunks as the Anthropic stream has events). `stream: true` gets an SSE stream of 202 events (message_start, ping, content_block_start,
 * 196 text deltas, content_block_stop, message_delta, message_stop): the first three at once, then
 * one event per millisecond timer (about 1,000 events a second, faster than any model streams), each
 * its own write, as a provider's are. The model `bench-hold` gets the first three events, then
 * nothing until `POST /__release` (or 2 minutes), so the bench can hold many streams open.
 *
 * Each text delta carries `~t` and the time it was written (16 digits, microseconds of the system's
 * monotonic clock, which `process.hrtime` reads alike in every process), so the load generator can
 * tell how long each event took to reach it.
 *
 * Run as a child process of bench/run.ts; prints `mock listening on http://127.0.0.1:PORT`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { fromUtf8, toUtf8 } from '@smithy/util-utf8';
import { HOLD_MODEL, monotonicUs, STAMP, STAMP_DIGITS } from './lib/wire';

const TEXT_DELTAS = 196;
const HOLD_MAX_MS = 120_000;

const STAMP_PLACEHOLDER = `${STAMP}${'0'.repeat(STAMP_DIGITS)}`;

/** One event, with where its time stamp goes (-1: it has none), and its JSON for Bedrock's frames. */
interface Event {
  bytes: Buffer;
  stampAt: number;
  data: string;
}

function sse(event: string, data: unknown): Event {
  const json = JSON.stringify(data);
  const bytes = Buffer.from(`event: ${event}\ndata: ${json}\n\n`);
  const at = bytes.indexOf(STAMP_PLACEHOLDER);
  return { bytes, stampAt: at === -1 ? -1 : at + STAMP.length, data: json };
}

const stampNow = (): string => String(monotonicUs()).padStart(STAMP_DIGITS, '0');

/** The event as it leaves: a copy, stamped now (the socket may still hold the previous copy). */
function stamped(e: Event): Buffer {
  if (e.stampAt === -1) return e.bytes;
  const b = Buffer.from(e.bytes);
  b.write(stampNow(), e.stampAt, 'latin1');
  return b;
}

const codec = new EventStreamCodec(toUtf8, fromUtf8);

/** The event as Bedrock sends it: a `chunk` frame whose payload carries the event's JSON in base64, stamped now. */
function framed(e: Event): Buffer {
  const json = e.stampAt === -1 ? e.data : e.data.replace(STAMP_PLACEHOLDER, `${STAMP}${stampNow()}`);
  return Buffer.from(
    codec.encode({
      headers: {
        ':event-type': { type: 'string', value: 'chunk' },
        ':content-type': { type: 'string', value: 'application/json' },
        ':message-type': { type: 'string', value: 'event' },
      },
      body: fromUtf8(JSON.stringify({ bytes: Buffer.from(json).toString('base64') })),
    }),
  );
}

/** A Gemini stream chunk as `:streamGenerateContent?alt=sse` writes it (`data:` only, usage on each). */
function geminiChunk(model: string, text: string, final: boolean): Event {
  const json = JSON.stringify({
    candidates: [
      { content: { role: 'model', parts: [{ text }] }, ...(final ? { finishReason: 'STOP' } : {}), index: 0 },
    ],
    usageMetadata: {
      promptTokenCount: USAGE.input_tokens,
      candidatesTokenCount: final ? TEXT_DELTAS * 6 : 0,
      totalTokenCount: USAGE.input_tokens + (final ? TEXT_DELTAS * 6 : 0),
    },
    modelVersion: model,
  });
  const bytes = Buffer.from(`data: ${json}\n\n`);
  const at = bytes.indexOf(STAMP_PLACEHOLDER);
  return { bytes, stampAt: at === -1 ? -1 : at + STAMP.length, data: json };
}

/** As many chunks as the Anthropic stream has events, so every column streams the same count. */
function geminiEvents(model: string): Event[] {
  const events = [
    geminiChunk(model, '', false),
    geminiChunk(model, '', false),
    geminiChunk(model, '', false),
  ];
  for (let i = 0; i < TEXT_DELTAS; i++)
    events.push(geminiChunk(model, `token ${i} of the answer ${STAMP_PLACEHOLDER}, `, false));
  events.push(geminiChunk(model, '', false), geminiChunk(model, '', false), geminiChunk(model, '', true));
  return events;
}

/** A Chat Completions stream chunk, as OpenAI (and Azure, and OpenAI-compatible servers) write it. */
function chatChunk(
  model: string,
  delta: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Event {
  const json = JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion.chunk',
    created: 1764547200,
    model,
    choices: [{ index: 0, delta, finish_reason: null }],
    ...extra,
  });
  const bytes = Buffer.from(`data: ${json}\n\n`);
  const at = bytes.indexOf(STAMP_PLACEHOLDER);
  return { bytes, stampAt: at === -1 ? -1 : at + STAMP.length, data: json };
}

/** As many events as the Anthropic stream has: three openers, the deltas, the finish, usage and `[DONE]`. */
function chatEvents(model: string): Event[] {
  const events = [
    chatChunk(model, { role: 'assistant', content: '' }),
    chatChunk(model, {}),
    chatChunk(model, {}),
  ];
  for (let i = 0; i < TEXT_DELTAS; i++)
    events.push(chatChunk(model, { content: `token ${i} of the answer ${STAMP_PLACEHOLDER}, ` }));
  const finish = JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion.chunk',
    created: 1764547200,
    model,
    choices: [{ index: 0, delta: {}, finish_reason: 'stop' }],
  });
  const usage = JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion.chunk',
    created: 1764547200,
    model,
    choices: [],
    usage: {
      prompt_tokens: USAGE.input_tokens,
      completion_tokens: TEXT_DELTAS * 6,
      total_tokens: USAGE.input_tokens + TEXT_DELTAS * 6,
    },
  });
  for (const data of [finish, usage, '[DONE]'])
    events.push({ bytes: Buffer.from(`data: ${data}\n\n`), stampAt: -1, data });
  return events;
}

function chatJson(model: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: 'chatcmpl-bench',
      object: 'chat.completion',
      created: 1764547200,
      model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'The answer, as fast as the mock can give it. '.repeat(12) },
          finish_reason: 'stop',
        },
      ],
      usage: {
        prompt_tokens: USAGE.input_tokens,
        completion_tokens: 120,
        total_tokens: USAGE.input_tokens + 120,
      },
    }),
  );
}

function geminiJson(model: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      candidates: [
        {
          content: {
            role: 'model',
            parts: [{ text: 'The answer, as fast as the mock can give it. '.repeat(12) }],
          },
          finishReason: 'STOP',
          index: 0,
        },
      ],
      usageMetadata: {
        promptTokenCount: USAGE.input_tokens,
        candidatesTokenCount: 120,
        totalTokenCount: USAGE.input_tokens + 120,
      },
      modelVersion: model,
    }),
  );
}

type Render = (e: Event) => Buffer;

/** What a request asks for, whichever provider's path it came by. */
interface Asked {
  model: string;
  stream: boolean;
  render: Render;
  gemini?: boolean;
  chat?: boolean;
}

const VERTEX =
  /^\/v1\/projects\/[^/]+\/locations\/[^/]+\/publishers\/anthropic\/models\/([^/:]+):(rawPredict|streamRawPredict)$/;
// The Gemini API's path, and Vertex AI's for Gemini (`…/publishers/google/models/{m}:…`): the same bytes.
const GEMINI =
  /^\/(?:v1beta|v1beta1\/projects\/[^/]+\/locations\/[^/]+\/publishers\/google)\/models\/([^/:]+):(generateContent|streamGenerateContent)$/;
// OpenAI's Chat Completions as an OpenAI-compatible server (`/v1/…`) and Azure (`/openai/v1/…`) serve it.
const CHAT = /^(?:\/openai)?\/v1\/chat\/completions$/;
const BEDROCK = /^\/model\/([^/]+)\/(invoke|invoke-with-response-stream)$/;

function asked(path: string, body: { model?: unknown; stream?: unknown }): Asked | undefined {
  if (path === '/v1/messages')
    return typeof body.model === 'string'
      ? { model: body.model, stream: body.stream === true, render: stamped }
      : undefined;
  const v = VERTEX.exec(path);
  if (v)
    return { model: decodeURIComponent(v[1] ?? ''), stream: v[2] === 'streamRawPredict', render: stamped };
  const b = BEDROCK.exec(path);
  if (b) return { model: decodeURIComponent(b[1] ?? ''), stream: b[2] !== 'invoke', render: framed };
  if (CHAT.test(path))
    return typeof body.model === 'string'
      ? { model: body.model, stream: body.stream === true, render: stamped, chat: true }
      : undefined;
  const g = GEMINI.exec(path);
  if (g)
    return { model: g[1] ?? '', stream: g[2] === 'streamGenerateContent', render: stamped, gemini: true };
  return undefined;
}

const USAGE = {
  input_tokens: 1200,
  output_tokens: 0,
  cache_read_input_tokens: 0,
  cache_creation_input_tokens: 0,
};

function streamEvents(model: string): Event[] {
  const id = 'msg_bench0000000000000000001';
  const events = [
    sse('message_start', {
      type: 'message_start',
      message: {
        id,
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...USAGE, output_tokens: 1 },
      },
    }),
    sse('ping', { type: 'ping' }),
    sse('content_block_start', {
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'text', text: '' },
    }),
  ];
  for (let i = 0; i < TEXT_DELTAS; i++) {
    events.push(
      sse('content_block_delta', {
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text: `token ${i} of the answer ${STAMP_PLACEHOLDER}, ` },
      }),
    );
  }
  events.push(
    sse('content_block_stop', { type: 'content_block_stop', index: 0 }),
    sse('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { output_tokens: TEXT_DELTAS * 6 },
    }),
    sse('message_stop', { type: 'message_stop' }),
  );
  return events;
}

function jsonBody(model: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: 'msg_bench0000000000000000002',
      type: 'message',
      role: 'assistant',
      model,
      content: [{ type: 'text', text: 'The answer, as fast as the mock can give it. '.repeat(12) }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { ...USAGE, output_tokens: 120 },
    }),
  );
}

/** Everything a model name needs, encoded once. */
interface Prepared {
  json: Buffer;
  events: Event[];
}

const prepared = new Map<string, Prepared>();

function bytesFor(model: string, wire: 'gemini' | 'chat' | 'messages' = 'messages'): Prepared {
  const key = `${wire}:${model}`;
  let p = prepared.get(key);
  if (!p) {
    p =
      wire === 'gemini'
        ? { json: geminiJson(model), events: geminiEvents(model) }
        : wire === 'chat'
          ? { json: chatJson(model), events: chatEvents(model) }
          : { json: jsonBody(model), events: streamEvents(model) };
    if (prepared.size < 16) prepared.set(key, p);
  }
  return p;
}

/** Events sent before a held stream waits. */
const HELD_PREFIX = 3;
interface Held {
  res: http.ServerResponse;
  rest: Buffer;
  since: number;
}
const held = new Set<Held>();
const counts = { json: 0, stream: 0, held: 0, bad: 0 };

function release(): number {
  const n = held.size;
  for (const h of held) h.res.end(h.rest);
  held.clear();
  return n;
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  if (req.url === '/__release' && req.method === 'POST') {
    res.end(JSON.stringify({ released: release() }));
    return;
  }
  if (req.url === '/__stats' && req.method === 'GET') {
    res.end(JSON.stringify({ ...counts, holding: held.size }));
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/token' && req.method === 'POST') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: 'ya29.bench', expires_in: 3600, token_type: 'Bearer' }));
      return;
    }
    let body: { model?: unknown; stream?: unknown };
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
    } catch {
      body = {};
    }
    const path = (req.url ?? '').split('?')[0] ?? '';
    const ask = req.method === 'POST' ? asked(path, body) : undefined;
    if (!ask) {
      counts.bad++;
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          type: 'error',
          error: { type: 'not_found_error', message: `${req.method} ${path}` },
        }),
      );
      return;
    }
    const p = bytesFor(ask.model, ask.gemini ? 'gemini' : ask.chat ? 'chat' : 'messages');
    if (!ask.stream) {
      counts.json++;
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': p.json.length,
        'request-id': 'req_bench_json',
      });
      res.end(p.json);
      return;
    }
    res.writeHead(200, {
      'content-type':
        ask.render === framed ? 'application/vnd.amazon.eventstream' : 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'request-id': 'req_bench_stream',
    });
    if (ask.model === HOLD_MODEL) {
      counts.held++;
      res.write(Buffer.concat(p.events.slice(0, HELD_PREFIX).map(ask.render)));
      const rest = Buffer.concat(p.events.slice(HELD_PREFIX).map(ask.render));
      const h: Held = { res, rest, since: Date.now() };
      held.add(h);
      res.on('close', () => held.delete(h));
      return;
    }
    counts.stream++;
    void writeEvents(res, p.events, ask.render);
  });
});

/** The opening events at once, then one event per millisecond timer. */
async function writeEvents(res: http.ServerResponse, events: Event[], render: Render): Promise<void> {
  res.write(Buffer.concat(events.slice(0, HELD_PREFIX).map(render)));
  for (const e of events.slice(HELD_PREFIX)) {
    await new Promise<void>((r) => setTimeout(r, 1));
    if (res.destroyed) return;
    res.write(render(e));
  }
  res.end();
}

// A held stream never outlives HOLD_MAX_MS, whatever happens to the bench.
const holdGuard = setInterval(() => {
  const now = Date.now();
  for (const h of held) {
    if (now - h.since < HOLD_MAX_MS) continue;
    h.res.end(h.rest);
    held.delete(h);
  }
}, 1_000);
holdGuard.unref();

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`mock listening on http://127.0.0.1:${port}\n`);
});

// Started with an IPC channel: exit with the bench.
process.on('disconnect', () => process.exit(0));
