import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { type Listening, listenOnLoopback } from './loopback';

export interface Hit {
  key: string;
  path: string;
  body: Record<string, unknown>;
}

/** What to answer: a status + JSON body, or a raw handler. undefined: a normal success. */
export type Rule = (
  hit: Hit,
  res: http.ServerResponse,
) => { status: number; body: unknown; headers?: Record<string, string> } | 'handled' | undefined;

/**
 * An upstream speaking Anthropic Messages, OpenAI Chat and Responses (just enough of each), that
 * tells the keys it is asked with apart and answers each request as `rule` says: for what routing
 * and key pools do with a key's or a request's error answers.
 */
export class KeyedUpstream {
  readonly hits: Hit[] = [];
  rule: Rule = () => undefined;
  private readonly server = http.createServer((req, res) => void this.handle(req, res));
  private listening: Listening | undefined;
  url = '';

  async start(): Promise<this> {
    this.listening = await listenOnLoopback(this.server);
    this.url = this.listening.origin;
    return this;
  }
  stop(): Promise<void> {
    return this.listening?.stop() ?? Promise.resolve();
  }
  count(pred: (h: Hit) => boolean): number {
    return this.hits.filter(pred).length;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const p = (req.url ?? '').split('?')[0]!;
    const key = String(req.headers['x-api-key'] ?? req.headers.authorization ?? '').replace(/^Bearer /, '');
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
    } catch {}
    const hit = { key, path: p, body };
    this.hits.push(hit);
    const r = this.rule(hit, res);
    if (r === 'handled') return;
    if (r) {
      res.writeHead(r.status, { 'content-type': 'application/json', ...(r.headers ?? {}) });
      res.end(JSON.stringify(r.body));
      return;
    }
    ok(hit, res);
  }
}

export function ok(hit: Hit, res: http.ServerResponse, text = 'ok'): void {
  const model = String(hit.body.model ?? 'm');
  const stream = hit.body.stream === true;
  if (hit.path.endsWith('/chat/completions')) {
    if (stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: { role: 'assistant', content: text }, finish_reason: null }] })}\n\n`,
      );
      res.write(
        `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
      );
      res.write(
        `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [], usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } })}\n\n`,
      );
      res.end('data: [DONE]\n\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: 'chatcmpl-1',
        object: 'chat.completion',
        created: 1,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
      }),
    );
    return;
  }
  if (hit.path.endsWith('/responses')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: 'resp_1',
        object: 'response',
        created_at: 1,
        status: 'completed',
        model,
        output: [
          {
            type: 'message',
            id: 'msg_1',
            status: 'completed',
            role: 'assistant',
            content: [{ type: 'output_text', text, annotations: [] }],
          },
        ],
        usage: { input_tokens: 5, output_tokens: 3, total_tokens: 8 },
      }),
    );
    return;
  }
  if (stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = (event: string, data: unknown) =>
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    ev('message_start', {
      type: 'message_start',
      message: {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 5, output_tokens: 1 },
      },
    });
    ev('content_block_start', {
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'text', text: '' },
    });
    ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } });
    ev('content_block_stop', { type: 'content_block_stop', index: 0 });
    ev('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { output_tokens: 3 },
    });
    ev('message_stop', { type: 'message_stop' });
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model,
      content: [{ type: 'text', text }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 5, output_tokens: 3 },
    }),
  );
}

export async function providersFile(dir: string, json: unknown): Promise<string> {
  const file = path.join(dir, `providers-${Math.random().toString(36).slice(2)}.json`);
  await fs.writeFile(file, JSON.stringify(json));
  return file;
}

export async function post(
  url: string,
  key: string,
  body: unknown,
): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${key}`,
      'anthropic-version': '2023-06-01',
    },
    body: JSON.stringify(body),
  });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

/** Body fields the APIs `unknownFieldAnswer` speaks for know (any of them). */
const KNOWN_FIELDS = new Set([
  'model',
  'max_tokens',
  'messages',
  'stream',
  'stream_options',
  'system',
  'metadata',
  'temperature',
  'input',
  'store',
  'contents',
  'generationConfig',
]);

/**
 * What real providers answer a body field they do not know, quoting its name (member-chosen) in a
 * 400: Anthropic "<f>: Extra inputs are not permitted", OpenAI Chat "Unrecognized request argument
 * supplied: <f>", Responses "Unknown parameter: '<f>'.", Gemini 'Unknown name "<f>"'. Undefined when
 * every field is known.
 */
export function unknownFieldAnswer(h: Hit): { status: number; body: unknown } | undefined {
  const extra = Object.keys(h.body).find((k) => !KNOWN_FIELDS.has(k));
  if (!extra) return undefined;
  if (h.path.includes('/chat/completions'))
    return {
      status: 400,
      body: {
        error: {
          message: `Unrecognized request argument supplied: ${extra}`,
          type: 'invalid_request_error',
          param: null,
          code: null,
        },
      },
    };
  if (h.path.includes('/responses'))
    return {
      status: 400,
      body: {
        error: {
          message: `Unknown parameter: '${extra}'.`,
          type: 'invalid_request_error',
          param: extra,
          code: 'unknown_parameter',
        },
      },
    };
  if (h.path.includes(':generateContent'))
    return {
      status: 400,
      body: {
        error: {
          code: 400,
          message: `Invalid JSON payload received. Unknown name "${extra}": Cannot find field.`,
          status: 'INVALID_ARGUMENT',
          details: [
            {
              '@type': 'type.googleapis.com/google.rpc.BadRequest',
              fieldViolations: [
                { description: `Invalid JSON payload received. Unknown name "${extra}": Cannot find field.` },
              ],
            },
          ],
        },
      },
    };
  return {
    status: 400,
    body: {
      type: 'error',
      error: { type: 'invalid_request_error', message: `${extra}: Extra inputs are not permitted` },
    },
  };
}
