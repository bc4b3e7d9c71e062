import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import { buildApp } from '../../server/app';
import { ConfigError, loadConfig } from '../../server/config';
import { BridgeError } from '../../server/errors';
import { priceModelOf } from '../../server/providers/bedrock/models';
import {
  type AttemptOutcome,
  type CredentialLease,
  type CredentialSource,
  singleCredential,
} from '../../server/routing/credentials';
import type { Interception } from '../../shared/interception';
import { AnthropicMock, MOCK_TEXT, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import {
  AWS_TEST_CREDENTIALS,
  BEDROCK_REGION,
  BEDROCK_TEXT,
  BEDROCK_USAGE,
  BedrockMock,
} from '../helpers/bedrock-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { GEMINI_UPSTREAM_KEY, type GeminiMock, startGeminiMock } from '../helpers/gemini-mock';
import { freePort, type Listening, listenOnLoopback } from '../helpers/loopback';
import { everythingStdio } from '../helpers/mcp-servers';
import { OPENAI_UPSTREAM_KEY, OpenAIMock } from '../helpers/openai-mock';
import { testPostgres } from '../helpers/postgres';
import { ToolModelMock } from '../helpers/tool-model-mock';

/** What one scripted answer does with the upstream response. */
type Answer = (res: http.ServerResponse, body: { model?: string; stream?: boolean }) => void | Promise<void>;

/** A tiny upstream answering each request with the next scripted answer, in the Anthropic wire format by default. */
class Scripted {
  readonly requests: {
    url: string;
    headers: http.IncomingHttpHeaders;
    body: { model?: string; stream?: boolean };
  }[] = [];
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
    this.requests.push({ url: req.url ?? '', headers: req.headers, body });
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

/** A 200 stream whose first event is the request's fault (as Bedrock's in-stream `validationException` is). */
const invalidAsFirstEvent: Answer = (res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
  sse(res, 'error', {
    type: 'error',
    error: { type: 'invalid_request_error', message: 'messages.0.content: field required' },
  });
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
        'openai-s': { type: 'openai', baseUrl: `${primary.url}/v1`, apiKey: OPENAI_UPSTREAM_KEY },
      },
      routes: {
        [ROUTED]: ['anthropic', `backup:${BACKUP_MODEL}`],
        'claude-haiku-4-5': ['down', 'anthropic'],
        'gpt-4o': ['openai', 'openai-b'],
        'gpt-4.1': ['openai-s', 'openai-b'],
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

  it("keeps a failed target's error redacted in the record's attempts (it may echo what the member sent)", async () => {
    const pasted = `sk-ant-api03-${'Q'.repeat(90)}AA`;
    primary.next(anthropicError(429, 'rate_limit_error', `Too many requests for key ${pasted}`));
    backup.next({ kind: 'text', usage: USAGE });
    const { response } = await anthropic()
      .messages.create({ model: ROUTED, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    const rec = await recordOf(response.headers.get('x-aibridge-interception-id')!);
    assert.equal(rec.attempts?.length, 1);
    const message = rec.attempts![0]!.error?.message ?? '';
    assert.ok(!message.includes(pasted.slice(14, 40)), message);
    assert.match(message, /Too many requests for key \[REDACTED/);
    assert.ok(
      rec.redactions.some((r) => r.field === 'attempts[0].error'),
      JSON.stringify(rec.redactions),
    );
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

  /** A model without a route, as raw bytes: its answer's status and headers are the point. */
  const unrouted = () => askMessages(tb.url, key, { model: 'claude-opus-4-6', max_tokens: 10 });

  it('the organisation’s key refused (401): the next target serves; with none, a 502 naming the instance, not to be retried, and an alert', async () => {
    primary.next(anthropicError(401, 'authentication_error', 'invalid x-api-key'));
    const msg = await anthropic().messages.create({
      model: ROUTED,
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(msg.model, BACKUP_MODEL, 'a bad key on one target is what routing survives');
    const rec = await lastRecord();
    assert.equal(rec.provider, 'backup');
    assert.equal(rec.attempts?.[0]?.httpStatus, 401);
    assert.equal(rec.attempts?.[0]?.error?.type, 'authentication_error');

    // No other target: the member is told their key is fine and the organisation's is not.
    primary.next(anthropicError(401, 'authentication_error', 'invalid x-api-key'));
    const res = await unrouted();
    assert.equal(res.status, 502);
    assert.equal(res.headers.get('x-should-retry'), 'false', 'agents stop rather than retry for minutes');
    const body = JSON.parse(res.body) as { type: string; error: { type: string; message: string } };
    assert.equal(body.type, 'error', 'Anthropic’s error shape');
    assert.match(
      body.error.message,
      /refused the organisation's credential for instance "anthropic".*your bridge key was accepted/,
    );
    const failed = await lastRecord();
    assert.equal(failed.status, 'error');
    assert.equal(failed.error?.type, 'upstream_auth_failed');
    assert.equal(backup.messageRequests().length, 1, 'only the routed request went to the backup');

    const alerts = await tb.api<{ items: { rule: string; message: string }[] }>(
      'GET',
      '/api/v1/alerts',
      tb.adminKey,
    );
    const refused = alerts.body.items.filter(
      (a) => a.rule === 'upstream_key_auth_failed' && a.message.includes('"anthropic"'),
    );
    assert.equal(refused.length, 1, 'one alert, not one per request');
    const ready = await tb.api<{
      status: string;
      upstreams: Record<string, { credential?: { refused?: boolean } }>;
    }>('GET', '/readyz', tb.adminKey);
    assert.equal(ready.status, 200, 'still ready: the admin API is where the key is replaced');
    assert.equal(ready.body.status, 'degraded');
    assert.equal(ready.body.upstreams.anthropic?.credential?.refused, true);
    // The provider takes the key again (replaced upstream): the instance is itself again.
    await anthropic().messages.create({
      model: 'claude-opus-4-6',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    });
    await lastRecord();
    const again = await tb.api<{ upstreams: Record<string, { credential?: { refused?: boolean } }> }>(
      'GET',
      '/readyz',
      tb.adminKey,
    );
    assert.equal(again.body.upstreams.anthropic?.credential?.refused, undefined);
    // Refused again (a 401 some requests draw and others not): the state follows, the alert does
    // not repeat within the hour, and the provider's reason is passed on.
    primary.next(anthropicError(401, 'permission_error', 'Missing scopes: api.responses.write'));
    const scoped = await unrouted();
    assert.equal(scoped.status, 502);
    assert.match(scoped.body, /401: Missing scopes: api\.responses\.write/);
    await lastRecord();
    const later = await tb.api<{ items: { rule: string; message: string }[] }>(
      'GET',
      '/api/v1/alerts',
      tb.adminKey,
    );
    assert.equal(
      later.body.items.filter(
        (a) => a.rule === 'upstream_key_auth_failed' && a.message.includes('"anthropic"'),
      ).length,
      1,
      'one alert an hour per instance',
    );
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

  it('a first event that is the request’s fault goes to the client: no failover, and no breaker opens for others', async () => {
    // More than the breaker's threshold: a member sending requests the provider refuses must not
    // move everyone else off the target.
    for (let i = 0; i < 7; i++) {
      primary.reset();
      primary.next(invalidAsFirstEvent);
      const stream = anthropic().messages.stream({
        model: ROUTED,
        max_tokens: 100,
        messages: [{ role: 'user', content: 'hi' }],
      });
      await assert.rejects(stream.finalMessage(), (err: unknown) => {
        assert.match(String(err), /field required/);
        return true;
      });
      assert.equal(backup.messageRequests().length, 0, 'not sent to another target');
      const rec = await lastRecord();
      assert.equal(rec.provider, 'anthropic');
      assert.equal(rec.status, 'error');
      assert.equal(rec.error?.type, 'invalid_request_error');
      assert.equal(rec.attempts, undefined);
    }
    primary.reset();
    const ok = await anthropic().messages.create({
      model: ROUTED,
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(
      ok.content[0]?.type === 'text' && ok.content[0].text,
      'primary text',
      'the first target still serves',
    );
    assert.equal((await lastRecord()).provider, 'anthropic');
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
    const res = await askMessages(tb.url, key, { model: 'claude-opus-4-1', max_tokens: 10 });
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '3');
    assert.deepEqual(JSON.parse(res.body), {
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

  it('OpenAI streams fail over on an error chunk first, and on response.failed right after the opening events', async () => {
    const client = new OpenAI({ apiKey: key, baseURL: `${tb.url}/openai-s/v1`, maxRetries: 0 });
    primary.next((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(
        `data: ${JSON.stringify({ error: { message: 'The server had an error', type: 'server_error', param: null, code: null } })}\n\n`,
      );
    });
    const chat = await client.chat.completions.create({
      model: 'gpt-4.1',
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    });
    let text = '';
    for await (const chunk of chat) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(text, 'Hello from the OpenAI mock.');
    let rec = await lastRecord();
    assert.equal(rec.provider, 'openai-b');
    assert.equal(rec.attempts?.[0]?.provider, 'openai-s');
    assert.equal(rec.attempts?.[0]?.error?.message, 'The server had an error');

    primary.next((res) => {
      const response = {
        id: 'resp_1',
        object: 'response',
        created_at: 1741476542,
        model: 'gpt-4.1',
        output: [],
        usage: null,
      };
      const ev = (type: string, seq: number, extra: object): string =>
        `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq, ...extra })}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(ev('response.created', 0, { response: { ...response, status: 'in_progress', error: null } }));
      res.write(
        ev('response.in_progress', 1, { response: { ...response, status: 'in_progress', error: null } }),
      );
      res.end(
        ev('response.failed', 2, {
          response: {
            ...response,
            status: 'failed',
            error: { code: 'server_error', message: 'failed early' },
          },
        }),
      );
    });
    const stream = await client.responses.create({ model: 'gpt-4.1', input: 'hi', stream: true });
    const types: string[] = [];
    for await (const ev of stream) types.push(ev.type);
    assert.ok(!types.includes('response.failed'), 'the client never sees the failed attempt');
    assert.equal(types.at(-1), 'response.completed');
    rec = await lastRecord();
    assert.equal(rec.provider, 'openai-b');
    assert.equal(rec.api, 'responses');
    assert.deepEqual(rec.attempts?.[0]?.error, { type: 'server_error', message: 'failed early' });
  });

  it('the audit export carries the attempts: whole in JSONL, summarised in CSV', async () => {
    const get = async (format: string): Promise<string> => {
      const res = await fetch(`${tb.url}/api/v1/audit/export?format=${format}&provider=backup`, {
        headers: { authorization: `Bearer ${tb.adminKey}` },
      });
      assert.equal(res.status, 200);
      return res.text();
    };
    const lines = (await get('jsonl')).trim().split('\n');
    const first = JSON.parse(lines[0]!) as Interception;
    assert.equal(first.provider, 'backup');
    assert.equal(first.attempts?.[0]?.provider, 'anthropic');
    assert.equal(first.attempts?.[0]?.httpStatus, 429);
    const csv = (await get('csv')).split('\r\n');
    const header = csv[0]!.split(',');
    const at = header.indexOf('attempts');
    assert.ok(at > 0, csv[0]);
    assert.equal(csv[1]!.split(',')[at], `anthropic/${ROUTED}:429`);
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

/** Sets the process environment the AWS SDK's default chain reads; gives back a function restoring it. */
function awsEnv(vars: Record<string, string>): () => void {
  const names = [
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AWS_SESSION_TOKEN',
    'AWS_CREDENTIAL_EXPIRATION',
    'AWS_PROFILE',
    'AWS_CONFIG_FILE',
    'AWS_SHARED_CREDENTIALS_FILE',
    'AWS_EC2_METADATA_DISABLED',
  ];
  const saved = Object.fromEntries(names.map((k) => [k, process.env[k]]));
  for (const k of names) delete process.env[k];
  Object.assign(process.env, vars);
  return () => {
    for (const k of names) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  };
}

/** A key pool as the pools capability would give one (server/routing/credentials.ts), scripted. */
class FakePool implements CredentialSource {
  readonly reports: { key: string | null; outcome: AttemptOutcome }[] = [];
  /** Keys handed out in turn; `refuse` set: every `acquire` is refused as an exhausted pool is. */
  private i = 0;
  refuse: BridgeError | undefined;
  constructor(private readonly keys: readonly string[]) {}
  async acquire(): Promise<CredentialLease> {
    if (this.refuse) throw this.refuse;
    const name = this.keys[this.i++ % this.keys.length]!;
    return {
      keyName: name,
      headers: { 'x-api-key': `secret-of-${name}` },
      report: (outcome) => this.reports.push({ key: name, outcome }),
    };
  }
}

const BEDROCK_ID = 'us.anthropic.claude-sonnet-4-6-v1:0';

describe('failover to bedrock, past an open breaker, and over a key pool', () => {
  let primary: Scripted;
  let pooled: Scripted;
  let bedrock: BedrockMock;
  let pool: FakePool;
  let tb: TestBridge;
  let key: string;
  let restore: () => void;

  before(async () => {
    restore = awsEnv({
      AWS_ACCESS_KEY_ID: AWS_TEST_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: AWS_TEST_CREDENTIALS.secretAccessKey,
      AWS_SESSION_TOKEN: AWS_TEST_CREDENTIALS.sessionToken,
      AWS_CREDENTIAL_EXPIRATION: new Date(Date.now() + 120_000).toISOString(),
      AWS_CONFIG_FILE: '/nonexistent/aibridge-test-aws',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aibridge-test-aws',
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    primary = await new Scripted().start();
    pooled = await new Scripted().start();
    bedrock = await new BedrockMock().start();
    pool = new FakePool(['k1', 'k2']);
    const dir = await tempDir();
    const file = await providersFile(dir, {
      providers: {
        anthropic: { type: 'anthropic', baseUrl: primary.url, apiKey: UPSTREAM_KEY },
        pooled: { type: 'anthropic', baseUrl: pooled.url, apiKey: 'unused-the-pool-has-the-keys' },
        bedrock: { type: 'bedrock', region: BEDROCK_REGION, baseUrl: bedrock.url },
      },
      routes: {
        [ROUTED]: ['anthropic', `bedrock:${BEDROCK_ID}`],
        'claude-haiku-4-5': ['pooled', `bedrock:${BEDROCK_ID}`],
      },
    });
    tb = await startBridge(
      primary.url,
      // One failure opens a breaker, so the second request finds it open.
      { AIBRIDGE_PROVIDERS_FILE: file, AIBRIDGE_BREAKER_THRESHOLD: '1' },
      undefined,
      { credentials: (adapter) => (adapter.id === 'pooled' ? pool : singleCredential(adapter)) },
    );
    key = (await tb.addUser('dev@example.com')).key;
  });

  after(async () => {
    await tb?.close();
    await Promise.all([primary?.stop(), pooled?.stop(), bedrock?.close()]);
    restore?.();
  });

  let records = 0;
  async function lastRecord(): Promise<Interception> {
    records++;
    const all = await tb.interceptions(records);
    assert.equal(all.length, records, 'one record per request');
    return all[0]!;
  }

  const anthropic = (prefix = 'anthropic'): Anthropic =>
    new Anthropic({ apiKey: key, baseURL: `${tb.url}/${prefix}`, maxRetries: 0 });

  it('an Anthropic client fails over to a bedrock instance: signed, the model from the route, metered', async () => {
    primary.next(anthropicError(529, 'overloaded_error', 'Overloaded'));
    const msg = await anthropic()
      .messages.stream({ model: ROUTED, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] })
      .finalMessage();
    assert.equal(msg.content[0]?.type === 'text' && msg.content[0].text, BEDROCK_TEXT);
    const seen = bedrock.seen.at(-1)!;
    assert.equal(seen.signatureValid, true);
    assert.equal(seen.path, `/model/${encodeURIComponent(BEDROCK_ID)}/invoke-with-response-stream`);
    const rec = await lastRecord();
    assert.equal(rec.provider, 'bedrock');
    assert.equal(rec.model, priceModelOf(BEDROCK_ID));
    assert.equal(rec.usage.input, BEDROCK_USAGE.input_tokens);
    assert.deepEqual(
      rec.attempts?.map((a) => [a.provider, a.model, a.httpStatus, a.error?.type]),
      [['anthropic', ROUTED, 529, 'overloaded_error']],
    );
  });

  it('skips a target whose breaker is open, without asking it', async () => {
    const msg = await anthropic().messages.create({
      model: ROUTED,
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(msg.content[0]?.type === 'text' && msg.content[0].text, BEDROCK_TEXT);
    assert.equal(primary.requests.length, 1, 'the open breaker kept the request from the primary');
    const rec = await lastRecord();
    assert.equal(rec.provider, 'bedrock');
    assert.equal(rec.attempts?.[0]?.provider, 'anthropic');
    assert.equal(rec.attempts?.[0]?.httpStatus, 0);
    assert.equal(rec.attempts?.[0]?.error?.type, 'circuit_open');
  });

  it('tries another key of the pool on a 429, reporting each outcome, and records the key that served', async () => {
    pooled.next(anthropicError(429, 'rate_limit_error', 'slow down', { 'retry-after': '2' }));
    // Not a routed model: the pool's other key is still tried on the one instance.
    const msg = await anthropic('pooled').messages.create({
      model: 'claude-opus-4-1',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(msg.content[0]?.type === 'text' && msg.content[0].text, 'primary text');
    assert.deepEqual(
      pooled.requests.map((r) => r.headers['x-api-key']),
      ['secret-of-k1', 'secret-of-k2'],
    );
    assert.deepEqual(pool.reports, [
      { key: 'k1', outcome: { status: 429, retryAfterMs: 2000 } },
      { key: 'k2', outcome: { status: 200 } },
    ]);
    const rec = await lastRecord();
    assert.equal(rec.provider, 'pooled');
    assert.equal(rec.keyName, 'k2');
    assert.deepEqual(
      rec.attempts?.map((a) => [a.provider, a.keyName, a.httpStatus]),
      [['pooled', 'k1', 429]],
    );
    assert.ok(!JSON.stringify(rec).includes('secret-of'), 'key names only, never the secret');
  });

  it('every key of the pool failing: the client gets the last key’s answer as sent', async () => {
    pooled.reset();
    pool.reports.length = 0;
    pooled.next(
      anthropicError(429, 'rate_limit_error', 'first key limited', { 'retry-after': '5' }),
      anthropicError(429, 'rate_limit_error', 'second key limited', { 'retry-after': '9' }),
    );
    const res = await askMessages(tb.url, key, {
      model: 'claude-opus-4-1',
      max_tokens: 10,
      instance: 'pooled',
    });
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '9');
    assert.equal(
      (JSON.parse(res.body) as { error: { message: string } }).error.message,
      'second key limited',
    );
    // k1 and k2 tried; the pool's next key is k1 again, which this request already tried: no third.
    assert.equal(pooled.requests.length, 2);
    const rec = await lastRecord();
    assert.equal(rec.keyName, 'k2');
    assert.equal(rec.httpStatus, 429);
    assert.deepEqual(
      rec.attempts?.map((a) => [a.keyName, a.httpStatus]),
      [['k1', 429]],
    );
  });

  it('a pool with no usable key moves a routed request to the next target', async () => {
    pooled.reset();
    pool.refuse = new BridgeError('rate_limited', 'every key of "pooled" is cooling down', {
      headers: { 'retry-after': '3' },
    });
    try {
      const msg = await anthropic().messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'hi' }],
      });
      assert.equal(msg.content[0]?.type === 'text' && msg.content[0].text, BEDROCK_TEXT);
      assert.equal(pooled.requests.length, 0);
      const rec = await lastRecord();
      assert.equal(rec.provider, 'bedrock');
      assert.deepEqual(
        rec.attempts?.map((a) => [a.provider, a.keyName, a.httpStatus, a.error?.type]),
        [['pooled', null, 0, 'rate_limited']],
      );
    } finally {
      pool.refuse = undefined;
    }
  });
});

/**
 * A half-open breaker's probe whose attempt says nothing of the provider (no usable key in the
 * pool, the bridge short of descriptors) must still end: kept, the target was skipped as
 * `circuit_open` for good while its route went on to the next one.
 */
describe('a breaker probe that says nothing of the provider', () => {
  let pooled: Scripted;
  let backup: AnthropicMock;
  let pool: FakePool;
  let tb: TestBridge;
  let key: string;
  const COOLDOWN_MS = 200;

  before(async () => {
    pooled = await new Scripted().start();
    backup = await new AnthropicMock().start();
    pool = new FakePool(['k1']);
    const file = await providersFile(await tempDir(), {
      providers: {
        pooled: { type: 'anthropic', baseUrl: pooled.url, apiKey: 'unused-the-pool-has-the-keys' },
        backup: { type: 'anthropic', baseUrl: backup.url, apiKey: UPSTREAM_KEY },
      },
      routes: { 'claude-haiku-4-5': ['pooled', 'backup'] },
    });
    tb = await startBridge(
      backup.url,
      {
        AIBRIDGE_PROVIDERS_FILE: file,
        AIBRIDGE_BREAKER_THRESHOLD: '1',
        AIBRIDGE_BREAKER_COOLDOWN_MS: String(COOLDOWN_MS),
      },
      undefined,
      { credentials: (adapter) => (adapter.id === 'pooled' ? pool : singleCredential(adapter)) },
    );
    key = (await tb.addUser('probe@example.com')).key;
  });
  after(async () => {
    await tb?.close();
    await Promise.all([pooled?.stop(), backup?.stop()]);
  });

  const ask = async (): Promise<string | false> => {
    const msg = await new Anthropic({
      apiKey: key,
      baseURL: `${tb.url}/anthropic`,
      maxRetries: 0,
    }).messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    });
    return msg.content[0]?.type === 'text' && msg.content[0].text;
  };

  it('ends the probe, so the target is tried again after the next cooldown', async () => {
    // One failure opens the breaker: the backup serves.
    pooled.next(anthropicError(500, 'api_error', 'Internal server error'));
    assert.equal(await ask(), MOCK_TEXT);
    await new Promise((r) => setTimeout(r, COOLDOWN_MS + 100));
    // The half-open probe finds no usable key in the pool: nothing said of the provider.
    pool.refuse = new BridgeError('rate_limited', 'every key of "pooled" is cooling down');
    try {
      assert.equal(await ask(), MOCK_TEXT);
    } finally {
      pool.refuse = undefined;
    }
    await new Promise((r) => setTimeout(r, COOLDOWN_MS + 100));
    assert.equal(await ask(), 'primary text', 'the pooled instance was asked again, and served');
  });
});

describe('routes across replicas on one database', () => {
  let primary: Scripted;
  let backup: AnthropicMock;
  let a: TestBridge;
  let b: TestBridge;

  before(async () => {
    primary = await new Scripted().start();
    backup = await new AnthropicMock().start();
    const dir = await tempDir();
    const file = await providersFile(dir, {
      providers: {
        anthropic: { type: 'anthropic', baseUrl: primary.url, apiKey: UPSTREAM_KEY },
        backup: { type: 'anthropic', baseUrl: backup.url, apiKey: UPSTREAM_KEY },
      },
    });
    const env = {
      AIBRIDGE_PROVIDERS_FILE: file,
      AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('routes'),
    };
    a = await startBridge(primary.url, env);
    // The second replica shares the first's data dir (its key-hash secret) and database.
    b = await startBridge(primary.url, env, a.dataDir);
  });

  after(async () => {
    await b?.close();
    await a?.close();
    await Promise.all([primary?.stop(), backup?.stop()]);
  });

  it('a table PUT on one replica is used by the other on its next request', async () => {
    const dev = await a.addUser('replica@example.com');
    const put = await a.api('PUT', '/api/v1/routes', a.adminKey, {
      routes: { [ROUTED]: ['anthropic', `backup:${BACKUP_MODEL}`] },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await eventually(
      async () => {
        const got = await b.api<{ routes: Record<string, string[]> }>('GET', '/api/v1/routes', a.adminKey);
        return got.body.routes[ROUTED]?.length === 2 ? true : undefined;
      },
      { what: 'B to load the table A wrote', timeoutMs: 10_000, intervalMs: 50 },
    );
    primary.next(anthropicError(529, 'overloaded_error', 'Overloaded'));
    const msg = await new Anthropic({
      apiKey: dev.key,
      baseURL: `${b.url}/anthropic`,
      maxRetries: 0,
    }).messages.create({
      model: ROUTED,
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(msg.model, BACKUP_MODEL);
    const rec = (await b.interceptions(1))[0]!;
    assert.equal(rec.provider, 'backup');
    // The Postgres store keeps the record's attempts as they were written.
    assert.deepEqual(
      rec.attempts?.map((x) => [x.provider, x.httpStatus, x.error?.type]),
      [['anthropic', 529, 'overloaded_error']],
    );
  });
});

describe('routes for an API that names the model in its path (Gemini)', () => {
  let mock: GeminiMock;
  let tb: TestBridge;
  let key: string;

  before(async () => {
    mock = await startGeminiMock();
    const dir = await tempDir();
    const file = await providersFile(dir, {
      providers: {},
      // The mock answers a model named `*-overloaded` with Google's 503.
      routes: { 'gemini-2.5-pro-overloaded': ['gemini', 'gemini:gemini-2.5-flash'] },
    });
    tb = await startBridge('http://127.0.0.1:9', {
      AIBRIDGE_PROVIDERS_FILE: file,
      AIBRIDGE_GEMINI_BASE_URL: mock.origin,
      AIBRIDGE_GEMINI_API_KEY: GEMINI_UPSTREAM_KEY,
    });
    key = (await tb.addUser('gem@example.com')).key;
  });

  after(async () => {
    await tb?.close();
    await mock?.stop();
  });

  it('fails over to the target model by rewriting the path, the body untouched', async () => {
    const sdk = new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: `${tb.url}/gemini` } });
    const res = await sdk.models.generateContent({ model: 'gemini-2.5-pro-overloaded', contents: 'hi' });
    assert.equal(res.text, 'Bonjour');
    assert.deepEqual(
      mock.seen.filter((s) => s.method === 'POST').map((s) => s.url),
      [
        '/v1beta/models/gemini-2.5-pro-overloaded:generateContent',
        '/v1beta/models/gemini-2.5-flash:generateContent',
      ],
    );
    const bodies = mock.seen.filter((s) => s.method === 'POST').map((s) => JSON.stringify(s.body));
    assert.equal(bodies[0], bodies[1], 'the same body to both');
    const rec = (await tb.interceptions(1))[0]!;
    assert.equal(rec.provider, 'gemini');
    assert.equal(rec.model, 'gemini-2.5-flash');
    assert.deepEqual(
      rec.attempts?.map((a) => [a.provider, a.model, a.httpStatus]),
      [['gemini', 'gemini-2.5-pro-overloaded', 503]],
    );
  });
});

describe('routes with injected MCP tools (each round goes through the attempt loop)', function () {
  this.timeout(60_000);
  let mock: ToolModelMock;
  let tb: TestBridge;
  let key: string;

  before(async () => {
    mock = await new ToolModelMock().start();
    const dir = await tempDir();
    const downPort = await freePort();
    await fs.writeFile(
      path.join(dir, 'mcp-servers.json'),
      JSON.stringify({ servers: { everything: everythingStdio({ tools: { allow: ['echo'] } }) } }),
    );
    const file = await providersFile(dir, {
      providers: {
        anthropic: { type: 'anthropic', baseUrl: mock.url, apiKey: UPSTREAM_KEY },
        down: { type: 'anthropic', baseUrl: `http://127.0.0.1:${downPort}`, apiKey: UPSTREAM_KEY },
      },
      routes: { [ROUTED]: ['down', 'anthropic:claude-routed'] },
    });
    tb = await startBridge(mock.url, { AIBRIDGE_PROVIDERS_FILE: file }, dir);
    await tb.bridge.mcp.ready();
    key = (await tb.addUser('mcp-route@example.com')).key;
  });

  after(async () => {
    await tb?.close();
    await mock?.stop();
  });

  it('streams one answer; every round is served by the fallback, asked for its model', async () => {
    const client = new Anthropic({ apiKey: key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    const msg = await client.messages
      .stream({ model: ROUTED, max_tokens: 200, messages: [{ role: 'user', content: 'Echo something' }] })
      .finalMessage();
    const text = msg.content
      .filter((b) => b.type === 'text')
      .map((b) => (b as { text: string }).text)
      .join('');
    assert.match(text, /Echo: hello from the model/);
    assert.equal(mock.requests.length, 2, 'two rounds, both on the fallback');
    assert.deepEqual(
      mock.requests.map((r) => r.body.model),
      ['claude-routed', 'claude-routed'],
    );
    const rounds = await tb.interceptions(2);
    assert.equal(rounds.length, 2);
    for (const r of rounds) {
      assert.equal(r.provider, 'anthropic');
      assert.equal(r.model, 'claude-routed');
      assert.deepEqual(
        r.attempts?.map((a) => [a.provider, a.error?.type]),
        [['down', 'upstream_unreachable']],
      );
    }
  });
});
