import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import Anthropic, { APIError, AuthenticationError } from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { buildApp } from '../../server/app';
import { ConfigError, loadConfig } from '../../server/config';
import type { Interception } from '../../shared/interception';
import { AnthropicMock, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { freePort, type Listening, listenOnLoopback } from '../helpers/loopback';
import { OPENAI_UPSTREAM_KEY, OpenAIMock } from '../helpers/openai-mock';

/** What one scripted answer does with the upstream response. */
type Answer = (res: http.ServerResponse, body: { model?: string; stream?: boolean }) => void | Promise<void>;

/** A tiny upstream answering each request with the next scripted answer, in the Anthropic wire format by default. */
class Scripted {
  readonly requests: { url: string; body: { model?: string; stream?: boolean } }[] = [];
  private readonly queue: Answer[] = [];
  private listening: Listening | undefined;
  url = '';
  private readonly server = http.createServer((req, res) => void this.handle(req, res));

  async start(): Promise<this> {
    this.listening = await listenOnLoopback(this.server);
    this.url = this.listening.origin;
    return this;
  }

  stop(): Promise<void> {
    return this.listening?.stop() ?? Promise.resolve();
  }

  next(...answers: Answer[]): void {
    this.queue.push(...answers);
  }

  reset(): void {
    this.queue.length = 0;
    this.requests.length = 0;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as { model?: string; stream?: boolean };
    this.requests.push({ url: req.url ?? '', body });
    await (this.queue.shift() ?? anthropicAnswer('primary text'))(res, body);
  }
}

const USAGE = {
  input_tokens: 1000,
  output_tokens: 500,
  cache_read_input_tokens: 0,
  cache_creation_input_tokens: 0,
};

function sse(res: http.ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

/** A whole Anthropic Messages answer, or its stream, with `text`. */
function anthropicAnswer(text: string): Answer {
  return (res, body) => {
    const model = body.model ?? 'unknown';
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_scripted' });
      res.end(
        JSON.stringify({
          id: 'msg_scripted',
          type: 'message',
          role: 'assistant',
          model,
          content: [{ type: 'text', text }],
          stop_reason: 'end_turn',
          stop_sequence: null,
          usage: USAGE,
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    sse(res, 'message_start', {
      type: 'message_start',
      message: {
        id: 'msg_scripted',
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...USAGE, output_tokens: 1 },
      },
    });
    sse(res, 'content_block_start', {
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'text', text: '' },
    });
    sse(res, 'content_block_delta', {
      type: 'content_block_delta',
      index: 0,
      delta: { type: 'text_delta', text },
    });
    sse(res, 'content_block_stop', { type: 'content_block_stop', index: 0 });
    sse(res, 'message_delta', {
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { output_tokens: USAGE.output_tokens },
    });
    sse(res, 'message_stop', { type: 'message_stop' });
    res.end();
  };
}

function anthropicError(
  status: number,
  type: string,
  message: string,
  headers: Record<string, string> = {},
): Answer {
  return (res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify({ type: 'error', error: { type, message }, request_id: 'req_err' }));
  };
}

/** A 200 stream whose first event is an `event: error` (the case LiteLLM #40404 describes). */
const errorAsFirstEvent: Answer = (res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
  sse(res, 'error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
  res.end();
};

/** A 200 stream cut before its first event. */
const cutBeforeFirstEvent: Answer = (res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
  res.flushHeaders();
  setTimeout(() => res.socket?.destroy(), 20);
};

/** A stream that errors after its first events: the client has them, so it gets the error too. */
const errorAfterFirstEvent: Answer = async (res, body) => {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
  sse(res, 'message_start', {
    type: 'message_start',
    message: {
      id: 'msg_partial',
      type: 'message',
      role: 'assistant',
      model: body.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { ...USAGE, output_tokens: 1 },
    },
  });
  sse(res, 'content_block_start', {
    type: 'content_block_start',
    index: 0,
    content_block: { type: 'text', text: '' },
  });
  sse(res, 'content_block_delta', {
    type: 'content_block_delta',
    index: 0,
    delta: { type: 'text_delta', text: 'Partial' },
  });
  await new Promise((r) => setTimeout(r, 20));
  sse(res, 'error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
  res.end();
};

async function providersFile(dir: string, json: unknown): Promise<string> {
  const file = path.join(dir, `providers-${Math.random().toString(36).slice(2)}.json`);
  await fs.writeFile(file, JSON.stringify(json));
  return file;
}

const ROUTED = 'claude-sonnet-4-6';
const BACKUP_MODEL = 'claude-backup-1';

describe('routes and failover', () => {
  let primary: Scripted;
  let backup: AnthropicMock;
  let openaiA: OpenAIMock;
  let openaiB: OpenAIMock;
  let tb: TestBridge;
  let key: string;
  let downPort: number;

  before(async () => {
    primary = await new Scripted().start();
    backup = await new AnthropicMock().start();
    openaiA = await new OpenAIMock().start();
    openaiB = await new OpenAIMock().start();
    downPort = await freePort();
    const dir = await tempDir();
    const file = await providersFile(dir, {
      providers: {
        anthropic: { type: 'anthropic', baseUrl: primary.url, apiKey: UPSTREAM_KEY },
        backup: {
          type: 'anthropic',
          baseUrl: backup.url,
          apiKey: UPSTREAM_KEY,
          prices: { [BACKUP_MODEL]: { inputPerMTok: 1, outputPerMTok: 2 } },
        },
        // Nothing listens there: connection refused.
        down: { type: 'anthropic', baseUrl: `http://127.0.0.1:${downPort}`, apiKey: UPSTREAM_KEY },
        openai: { type: 'openai', baseUrl: openaiA.url, apiKey: OPENAI_UPSTREAM_KEY },
        'openai-b': { type: 'openai', baseUrl: openaiB.url, apiKey: OPENAI_UPSTREAM_KEY },
      },
      routes: {
        [ROUTED]: ['anthropic', `backup:${BACKUP_MODEL}`],
        'claude-haiku-4-5': ['down', 'anthropic'],
        'gpt-4o': ['openai', 'openai-b'],
      },
    });
    tb = await startBridge(primary.url, { AIBRIDGE_PROVIDERS_FILE: file });
    key = (await tb.addUser('dev@example.com')).key;
  });

  after(async () => {
    await tb?.close();
    await Promise.all([primary?.stop(), backup?.stop(), openaiA?.stop(), openaiB?.stop()]);
  });

  beforeEach(() => {
    primary.reset();
    backup.clear();
    backup.requests.length = 0;
    openaiA.clear();
    openaiB.clear();
    openaiA.requests.length = 0;
    openaiB.requests.length = 0;
  });

  const anthropic = (): Anthropic =>
    new Anthropic({ apiKey: key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });

  /** Every request here makes exactly one record (failed attempts are listed in it, not recorded apart). */
  let records = 0;
  async function lastRecord(): Promise<Interception> {
    records++;
    const all = await tb.interceptions(records);
    assert.equal(all.length, records, 'one record per request');
    return all[0]!;
  }

  async function recordOf(id: string): Promise<Interception> {
    const rec = await lastRecord();
    assert.equal(rec.id, id);
    return rec;
  }

  it('fails over on a 429 with retry-after: the backup serves, the record says who served and who failed', async () => {
    primary.next(
      anthropicError(429, 'rate_limit_error', 'Number of requests has exceeded your rate limit', {
        'retry-after': '7',
      }),
    );
    backup.next({ kind: 'text', usage: USAGE });
    const { data, response } = await anthropic()
      .messages.create({ model: ROUTED, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    assert.equal(data.content[0]?.type === 'text' && data.content[0].text, 'Hello from the upstream mock.');
    assert.equal(primary.requests.length, 1);
    assert.equal(primary.requests[0]!.body.model, ROUTED);
    const sent = backup.messageRequests();
    assert.equal(sent.length, 1);
    assert.equal(JSON.parse(sent[0]!.body).model, BACKUP_MODEL, 'the backup is asked for its own model id');
    const rec = await recordOf(response.headers.get('x-aibridge-interception-id')!);
    assert.equal(rec.provider, 'backup');
    assert.equal(rec.model, BACKUP_MODEL);
    assert.equal(rec.status, 'ok');
    assert.equal(rec.httpStatus, 200);
    assert.equal(rec.attempts?.length, 1);
    const a = rec.attempts![0]!;
    assert.equal(a.provider, 'anthropic');
    assert.equal(a.model, ROUTED);
    assert.equal(a.httpStatus, 429);
    assert.equal(a.keyName, null);
    assert.deepEqual(a.error, {
      type: 'rate_limit_error',
      message: 'Number of requests has exceeded your rate limit',
    });
    assert.ok(Date.parse(a.startedAt) <= Date.parse(a.endedAt));
    // Cost at the backup's own prices ($1 in, $2 out per million): 1000 in + 500 out.
    assert.equal(rec.priceKnown, true);
    assert.equal(rec.costSource, 'instance');
    assert.ok(Math.abs(rec.costUsd! - 0.002) < 1e-9, String(rec.costUsd));
  });

  it('fails over on a 529 for a streamed request: the client reads one clean stream', async () => {
    primary.next(anthropicError(529, 'overloaded_error', 'Overloaded'));
    const stream = anthropic().messages.stream({
      model: ROUTED,
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const msg = await stream.finalMessage();
    assert.equal(msg.content[0]?.type === 'text' && msg.content[0].text, 'Hello from the upstream mock.');
    assert.equal(msg.model, BACKUP_MODEL);
    const rec = await lastRecord();
    assert.equal(rec.provider, 'backup');
    assert.equal(rec.streamed, true);
    assert.equal(rec.attempts?.[0]?.httpStatus, 529);
  });

  it('does not fail over on a 401: the client gets the 401, the backup is never asked', async () => {
    primary.next(anthropicError(401, 'authentication_error', 'invalid x-api-key'));
    await assert.rejects(
      anthropic().messages.create({
        model: ROUTED,
        max_tokens: 10,
        messages: [{ role: 'user', content: 'hi' }],
      }),
      (err: unknown) => err instanceof AuthenticationError && err.status === 401,
    );
    assert.equal(backup.messageRequests().length, 0);
    const rec = await lastRecord();
    assert.equal(rec.provider, 'anthropic');
    assert.equal(rec.httpStatus, 401);
    assert.equal(rec.attempts, undefined);
  });

  it('fails over when the first target refuses the connection', async () => {
    const msg = await anthropic().messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(msg.content[0]?.type === 'text' && msg.content[0].text, 'primary text');
    const rec = await lastRecord();
    assert.equal(rec.provider, 'anthropic');
    assert.equal(rec.model, 'claude-haiku-4-5');
    assert.equal(rec.attempts?.length, 1);
    assert.equal(rec.attempts![0]!.provider, 'down');
    assert.equal(rec.attempts![0]!.httpStatus, 0);
    assert.equal(rec.attempts![0]!.error?.type, 'upstream_unreachable');
  });

  it('fails over when the stream errors as its first event, and when it breaks before one', async () => {
    for (const answer of [errorAsFirstEvent, cutBeforeFirstEvent]) {
      primary.reset();
      primary.next(answer);
      const stream = anthropic().messages.stream({
        model: ROUTED,
        max_tokens: 100,
        messages: [{ role: 'user', content: 'hi' }],
      });
      const msg = await stream.finalMessage();
      assert.equal(msg.content[0]?.type === 'text' && msg.content[0].text, 'Hello from the upstream mock.');
      assert.equal(primary.requests.length, 1);
      const rec = await lastRecord();
      assert.equal(rec.provider, 'backup');
      assert.equal(rec.attempts?.length, 1);
      assert.equal(rec.attempts![0]!.httpStatus, 200);
      assert.ok(rec.attempts![0]!.error);
    }
  });

  it('never fails over once the stream has started: the client gets the error event', async () => {
    primary.next(errorAfterFirstEvent);
    const stream = anthropic().messages.stream({
      model: ROUTED,
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hi' }],
    });
    let text = '';
    stream.on('text', (t) => {
      text += t;
    });
    await assert.rejects(
      stream.finalMessage(),
      (err: unknown) => err instanceof APIError || err instanceof Error,
    );
    assert.equal(text, 'Partial');
    assert.equal(backup.messageRequests().length, 0, 'no failover after the first byte');
    const rec = await lastRecord();
    assert.equal(rec.provider, 'anthropic');
    assert.equal(rec.status, 'error');
    assert.equal(rec.attempts, undefined);
  });

  it('every target failing: the client gets the last target’s error in its API’s shape', async () => {
    primary.next(anthropicError(529, 'overloaded_error', 'Overloaded'));
    backup.next({ kind: 'error', status: 500, type: 'api_error', message: 'Internal server error' });
    await assert.rejects(
      anthropic().messages.create({
        model: ROUTED,
        max_tokens: 10,
        messages: [{ role: 'user', content: 'hi' }],
      }),
      (err: unknown) =>
        err instanceof APIError && err.status === 500 && /Internal server error/.test(err.message),
    );
    const rec = await lastRecord();
    assert.equal(rec.provider, 'backup');
    assert.equal(rec.httpStatus, 500);
    assert.equal(rec.error?.type, 'api_error');
    assert.deepEqual(
      rec.attempts?.map((a) => [a.provider, a.httpStatus]),
      [['anthropic', 529]],
    );
  });

  it('a model without a route goes to its own instance only, relayed as before', async () => {
    primary.next(anthropicError(429, 'rate_limit_error', 'slow down', { 'retry-after': '3' }));
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({
        model: 'claude-opus-4-1',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    });
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '3');
    assert.deepEqual(await res.json(), {
      type: 'error',
      error: { type: 'rate_limit_error', message: 'slow down' },
      request_id: 'req_err',
    });
    assert.equal(backup.messageRequests().length, 0);
    const rec = await lastRecord();
    assert.equal(rec.provider, 'anthropic');
    assert.equal(rec.attempts, undefined);
  });

  it('OpenAI clients fail over too, streamed and not', async () => {
    const client = new OpenAI({ apiKey: key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
    openaiA.next({ kind: 'error', status: 503, type: 'server_error', code: null, message: 'busy' });
    const done = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(done.choices[0]?.message.content, 'Hello from the OpenAI mock.');
    assert.equal(openaiB.requests.length, 1);
    let rec = await lastRecord();
    assert.equal(rec.provider, 'openai-b');
    assert.equal(rec.attempts?.[0]?.provider, 'openai');
    assert.equal(rec.attempts?.[0]?.httpStatus, 503);

    openaiA.next({
      kind: 'error',
      status: 429,
      type: 'rate_limit_exceeded',
      code: 'rate_limit_exceeded',
      message: 'slow',
    });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o',
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(text, 'Hello from the OpenAI mock.');
    rec = await lastRecord();
    assert.equal(rec.provider, 'openai-b');
    assert.equal(rec.streamed, true);
    assert.equal(rec.attempts?.[0]?.httpStatus, 429);
    assert.ok(rec.usage.output > 0, 'usage metered from the backup’s stream');
  });

  it('counts failovers by instance and reason', async () => {
    const res = await fetch(`${tb.url}/metrics`, { headers: { authorization: `Bearer ${tb.adminKey}` } });
    const text = await res.text();
    assert.match(
      text,
      /aibridge_failovers_total\{from="anthropic",to="backup",reason="rate_limited"\} [1-9]/,
    );
    assert.match(text, /aibridge_failovers_total\{from="down",to="anthropic",reason="unreachable"\} [1-9]/);
    assert.match(
      text,
      /aibridge_failovers_total\{from="anthropic",to="backup",reason="stream_error"\} [1-9]/,
    );
  });
  it('GET /api/v1/routes shows the table; PUT checks it like the file (400 naming the entry), then uses it', async () => {
    const got = await tb.api<{ routes: Record<string, string[]>; source: string }>(
      'GET',
      '/api/v1/routes',
      tb.adminKey,
    );
    assert.equal(got.status, 200);
    assert.equal(got.body.source, 'file');
    assert.deepEqual(got.body.routes[ROUTED], ['anthropic', `backup:${BACKUP_MODEL}`]);
    assert.equal((await tb.api('GET', '/api/v1/routes', key)).status, 403, 'admins only');
    assert.equal((await tb.api('PUT', '/api/v1/routes', key, { routes: {} })).status, 403);

    const bad = async (routes: unknown, message: RegExp): Promise<void> => {
      const res = await tb.api<{ error: { code: string; message: string } }>(
        'PUT',
        '/api/v1/routes',
        tb.adminKey,
        {
          routes,
        },
      );
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'invalid_routes');
      assert.match(res.body.error.message, message);
    };
    await bad({ m: ['nowhere'] }, /routes\.m\[0\]: unknown instance "nowhere"/);
    await bad({ m: [] }, /routes\.m: the model has no target/);
    await bad({ m: ['backup', 'backup'] }, /routes\.m\[1\]: duplicate target/);
    await bad(
      { m: ['anthropic', 'openai:gpt-4o'] },
      /routes\.m\[1\]: instance "openai" does not serve messages/,
    );
    // Nothing changed by a refused PUT.
    assert.deepEqual(
      (await tb.api<{ routes: Record<string, string[]> }>('GET', '/api/v1/routes', tb.adminKey)).body.routes,
      got.body.routes,
    );

    const put = await tb.api<{ routes: Record<string, string[]>; source: string; updatedAt: string }>(
      'PUT',
      '/api/v1/routes',
      tb.adminKey,
      { routes: { 'claude-opus-4-1': ['anthropic', `backup:${BACKUP_MODEL}`] } },
    );
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.source, 'api');
    assert.deepEqual(put.body.routes, { 'claude-opus-4-1': ['anthropic', `backup:${BACKUP_MODEL}`] });
    try {
      primary.next(anthropicError(503, 'api_error', 'unavailable'));
      const msg = await anthropic().messages.create({
        model: 'claude-opus-4-1',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'hi' }],
      });
      assert.equal(msg.model, BACKUP_MODEL, 'the new route is used');
      const rec = await lastRecord();
      assert.equal(rec.provider, 'backup');
      assert.equal(rec.attempts?.[0]?.httpStatus, 503);
      // The old table's routes are gone with it.
      primary.next(anthropicError(503, 'api_error', 'unavailable'));
      await assert.rejects(
        anthropic().messages.create({
          model: ROUTED,
          max_tokens: 10,
          messages: [{ role: 'user', content: 'hi' }],
        }),
        (err: unknown) => err instanceof APIError && err.status === 503,
      );
      await lastRecord();
    } finally {
      await tb.api('PUT', '/api/v1/routes', tb.adminKey, { routes: got.body.routes });
    }
  });
});

describe('routes in the providers file', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir();
  });

  const providers = {
    anthropic: { type: 'anthropic', baseUrl: 'http://127.0.0.1:9', apiKey: 'k' },
    openai: { type: 'openai', baseUrl: 'http://127.0.0.1:9/v1', apiKey: 'k' },
  };

  async function load(routes: unknown): Promise<ReturnType<typeof loadConfig>> {
    const file = await providersFile(dir, { providers, routes });
    return loadConfig({ port: '0', 'data-dir': dir }, { AIBRIDGE_PROVIDERS_FILE: file });
  }

  async function refused(routes: unknown, message: RegExp): Promise<void> {
    await assert.rejects(load(routes), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.setting, 'AIBRIDGE_PROVIDERS_FILE');
      assert.match(err.message, message);
      return true;
    });
  }

  it('reads targets, splitting on the first colon only', async () => {
    const config = await load({ m: ['anthropic', 'openai:us.anthropic.claude-sonnet-4-6-v1:0'] });
    assert.deepEqual(config.routes.m, [
      { instance: 'anthropic', model: null },
      { instance: 'openai', model: 'us.anthropic.claude-sonnet-4-6-v1:0' },
    ]);
  });

  it('refuses an unknown instance, a model with no target, a duplicate and a bad shape, naming the entry', async () => {
    await refused({ m: ['anthropic', 'bedrok:x'] }, /routes\.m\[1\]: unknown instance "bedrok"/);
    await refused({ m: [] }, /routes\.m: the model has no target/);
    await refused({ m: ['anthropic', 'anthropic:m'] }, /routes\.m\[1\]: duplicate target/);
    await refused({ m: 'anthropic' }, /routes\.m: expected a list/);
    await refused({ m: ['anthropic:'] }, /routes\.m\[0\]: the model after the colon is empty/);
    await refused(['anthropic'], /routes\.: expected/);
  });

  it('refuses at start a route whose targets do not serve the same client API', async () => {
    const config = await load({ 'claude-sonnet-4-6': ['anthropic', 'openai:gpt-4o'] });
    await assert.rejects(buildApp(config), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, /routes\.claude-sonnet-4-6\[1\]: instance "openai" does not serve messages/);
      return true;
    });
  });
});
