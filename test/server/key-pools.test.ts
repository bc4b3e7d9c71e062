import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { ConfigError, loadConfig } from '../../server/config';
import { BridgeError } from '../../server/errors';
import { KeyPool, type PoolEvents, type PoolKey } from '../../server/routing/key-pool';
import { blameOf, keyRefusedIn } from '../../server/routing/key-refusal';
import { retryAfterMs, upstreamRetryAfterMs } from '../../server/routing/retry-after';
import type { Alert } from '../../shared/spend';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { eventually } from '../helpers/eventually';
import { type Listening, listenOnLoopback } from '../helpers/loopback';
import { testPostgres } from '../helpers/postgres';

/** What the upstream answers one key: an error status (with headers), once or until changed. */
interface Answer {
  status: number;
  headers?: Record<string, string>;
  /** The error body in place of the default one. */
  body?: unknown;
}

/**
 * An upstream that tells keys apart: Anthropic Messages at `/v1/messages` (key in `x-api-key`) and
 * OpenAI Chat Completions at `/v1/chat/completions` (key as a bearer), each answering in its own
 * wire shape. Tests script what a key gets; every other request gets a small JSON answer.
 */
class KeyedUpstream {
  /** The key each request carried, in order. */
  readonly used: string[] = [];
  /** Answers for the next requests with a key, first one first. */
  readonly once = new Map<string, Answer[]>();
  /** The answer a key gets whenever nothing is queued. */
  readonly always = new Map<string, Answer>();
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

  count(key: string): number {
    return this.used.filter((k) => k === key).length;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    for await (const _ of req);
    const openai = (req.url ?? '').includes('/chat/completions');
    const key = openai
      ? String(req.headers.authorization ?? '').replace(/^Bearer /, '')
      : String(req.headers['x-api-key'] ?? '');
    this.used.push(key);
    const a = this.once.get(key)?.shift() ?? this.always.get(key);
    res.setHeader('content-type', 'application/json');
    if (a) {
      res.writeHead(a.status, a.headers ?? {});
      const type =
        a.status === 429
          ? 'rate_limit_error'
          : a.status === 529
            ? 'overloaded_error'
            : 'authentication_error';
      res.end(
        JSON.stringify(
          a.body ??
            (openai
              ? { error: { message: `upstream ${a.status}`, type, param: null, code: null } }
              : { type: 'error', error: { type, message: `upstream ${a.status}` } }),
        ),
      );
      return;
    }
    res.end(
      JSON.stringify(
        openai
          ? {
              id: 'chatcmpl-1',
              object: 'chat.completion',
              created: 1,
              model: 'gpt-4o-mini',
              choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
              usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
            }
          : {
              id: 'msg_1',
              type: 'message',
              role: 'assistant',
              model: 'claude-sonnet-4-6',
              content: [{ type: 'text', text: 'ok' }],
              stop_reason: 'end_turn',
              stop_sequence: null,
              usage: { input_tokens: 5, output_tokens: 3 },
            },
      ),
    );
  }
}

const K1 = 'sk-ant-pool-k1-secret-0001';
const K2 = 'sk-ant-pool-k2-secret-0002';
const K3 = 'sk-ant-pool-k3-secret-0003';
const O1 = 'sk-openai-pool-o1-secret-0001';
const O2 = 'sk-openai-pool-o2-secret-0002';
const CREDENTIALS_KEY = randomBytes(32).toString('base64');

async function providersFile(dir: string, providers: unknown): Promise<string> {
  const file = path.join(dir, `providers-${Math.random().toString(36).slice(2)}.json`);
  await fs.writeFile(file, JSON.stringify({ providers }));
  return file;
}

/** A bridge whose built-in `anthropic` and `openai` instances are pools on `up`. */
async function poolBridge(
  up: KeyedUpstream,
  opts: {
    anthropicKeys?: unknown[];
    openaiKeys?: unknown[];
    clock?: TestClock;
    env?: Record<string, string>;
    dir?: string;
  } = {},
): Promise<TestBridge> {
  const dir = opts.dir ?? (await tempDir());
  const file = await providersFile(dir, {
    anthropic: {
      type: 'anthropic',
      baseUrl: up.url,
      keys: opts.anthropicKeys ?? [
        { name: 'k1', key: K1 },
        { name: 'k2', key: K2 },
      ],
    },
    openai: {
      type: 'openai',
      baseUrl: `${up.url}/v1`,
      keys: opts.openaiKeys ?? [
        { name: 'o1', key: O1 },
        { name: 'o2', key: O2 },
      ],
    },
  });
  return startBridge(
    up.url,
    {
      AIBRIDGE_PROVIDERS_FILE: file,
      AIBRIDGE_MCP_CREDENTIALS_KEY: CREDENTIALS_KEY,
      // 429s from one key are the pool's to handle here, not the instance's breaker.
      AIBRIDGE_BREAKER_THRESHOLD: '0',
      ...opts.env,
    },
    dir,
    opts.clock ? { clock: opts.clock } : {},
  );
}

function anthropic(tb: TestBridge, key: string): Anthropic {
  return new Anthropic({ baseURL: `${tb.url}/anthropic`, apiKey: key, maxRetries: 0 });
}

function ask(tb: TestBridge, key: string): Promise<Anthropic.Message> {
  return anthropic(tb, key).messages.create({
    model: 'claude-sonnet-4-6',
    max_tokens: 16,
    messages: [{ role: 'user', content: 'hi' }],
  });
}

describe('key pools', function () {
  this.timeout(60_000);
  let up: KeyedUpstream;

  beforeEach(async () => {
    up = await new KeyedUpstream().start();
  });
  afterEach(async () => {
    await up.stop();
  });

  describe('KeyPool on its own (TestClock)', () => {
    const noEvents: PoolEvents = { attempt: () => {}, rateLimited: () => {}, authFailed: () => {} };
    const adapter = { authHeaders: async (k?: string) => ({ 'x-api-key': k ?? '' }) };
    const key = (name: string, over: Partial<PoolKey> = {}): PoolKey => ({
      name,
      key: `secret-${name}`,
      weight: 1,
      disabled: false,
      source: 'file',
      ...over,
    });

    it('spreads 2:1 weights exactly over 30 attempts, interleaved', async () => {
      const pool = new KeyPool('p', adapter, new TestClock(), noEvents);
      pool.setKeys([key('a', { weight: 2 }), key('b')]);
      const names: string[] = [];
      for (let i = 0; i < 30; i++) names.push((await pool.acquire()).keyName!);
      assert.equal(names.filter((n) => n === 'a').length, 20);
      assert.equal(names.filter((n) => n === 'b').length, 10);
      // Smooth: never three of one key in a row.
      assert.deepEqual(names.slice(0, 6), ['a', 'b', 'a', 'a', 'b', 'a']);
    });

    it('cools down 1 s, 2 s, 4 s … capped at 60 s without retry-after, and resets on success', async () => {
      const clock = new TestClock();
      const pool = new KeyPool('p', adapter, clock, noEvents);
      pool.setKeys([key('a')]);
      const cooldownAfter429 = async (): Promise<number> => {
        (await pool.acquire()).report({ status: 429 });
        return Date.parse(pool.list()[0]!.cooldownUntil!) - clock.now();
      };
      assert.equal(await cooldownAfter429(), 1000);
      clock.advance(1000);
      assert.equal(await cooldownAfter429(), 2000);
      for (const expected of [4000, 8000, 16000, 32000, 60000, 60000]) {
        clock.advance(60_000);
        assert.equal(await cooldownAfter429(), expected);
      }
      clock.advance(60_000);
      (await pool.acquire()).report({ status: 200 });
      assert.equal(await cooldownAfter429(), 1000);
    });

    it('caps an upstream retry-after at 5 minutes; 529 cools down like 429', async () => {
      const clock = new TestClock();
      const pool = new KeyPool('p', adapter, clock, noEvents);
      pool.setKeys([key('a')]);
      (await pool.acquire()).report({ status: 529, retryAfterMs: 3_600_000 });
      assert.equal(Date.parse(pool.list()[0]!.cooldownUntil!) - clock.now(), 300_000);
      assert.equal(pool.list()[0]!.state, 'cooling');
    });

    it('a wall clock stepped back does not keep a key cooling, or its minute full, for the length of the step', async () => {
      const clock = new TestClock();
      const pool = new KeyPool('p', adapter, clock, noEvents);
      pool.setKeys([key('a', { rpm: 1 })]);
      (await pool.acquire()).report({ status: 429, retryAfterMs: 30_000 });
      clock.stepBack(2 * 86_400_000);
      const retryAfter = async (): Promise<string | undefined> => {
        const refused = await pool.acquire().then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(refused instanceof BridgeError);
        return refused.headers['retry-after'];
      };
      // The cooldown as given and the key's minute (rpm 1), counted from when the step is seen.
      assert.equal(await retryAfter(), '60');
      clock.advance(60_000);
      assert.equal((await pool.acquire()).keyName, 'a');
      // Its minute after another step: one minute from when it is seen, not an hour and a minute.
      clock.stepBack(3_600_000);
      assert.equal(await retryAfter(), '60');
      clock.advance(60_000);
      assert.equal((await pool.acquire()).keyName, 'a');
    });

    it('keeps a key under its rpm and tpm, and says when the minute frees up', async () => {
      const clock = new TestClock();
      const pool = new KeyPool('p', adapter, clock, noEvents);
      pool.setKeys([key('a', { rpm: 2 }), key('b', { tpm: 100 })]);
      const a1 = await pool.acquire();
      const b1 = await pool.acquire();
      assert.deepEqual([a1.keyName, b1.keyName], ['a', 'b']);
      b1.used?.(150);
      clock.advance(10_000);
      assert.equal((await pool.acquire()).keyName, 'a');
      // a: 2 requests this minute; b: 150 tokens of 100.
      const err = await pool.acquire().then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof BridgeError);
      assert.equal(err.code, 'upstream_keys_cooling');
      assert.equal(err.headers['retry-after'], '50');
      clock.advance(50_000);
      // Both free again: a's first request and b's tokens left the minute.
      assert.deepEqual([(await pool.acquire()).keyName, (await pool.acquire()).keyName].sort(), ['a', 'b']);
    });

    it("tells a 403 that names the key from one that answers the request (each provider's shapes)", () => {
      const google = (message: string, reason?: string) => ({
        error: {
          code: 403,
          message,
          status: 'PERMISSION_DENIED',
          ...(reason ? { details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason }] } : {}),
        },
      });
      for (const refused of [
        google('Your API key was reported as leaked. Please use another API key.'),
        google('Requests to this API are blocked.', 'API_KEY_SERVICE_BLOCKED'),
        google(
          'Generative Language API has not been used in project 123 before or it is disabled.',
          'SERVICE_DISABLED',
        ),
        [google('Permission denied: Consumer has been suspended.', 'CONSUMER_SUSPENDED')],
        {
          type: 'error',
          error: { type: 'permission_error', message: 'This organization has been disabled.' },
        },
      ])
        assert.equal(keyRefusedIn(refused), true, JSON.stringify(refused));
      for (const asked of [
        google('You do not have permission to access the File abc or it may not exist.'),
        google('Permission denied on resource cachedContents/xyz.'),
        {
          type: 'error',
          error: {
            type: 'permission_error',
            message: 'Your API key does not have permission to use the specified resource.',
          },
        },
        {
          error: {
            message: 'You are not allowed to sample from this model',
            type: 'invalid_request_error',
            code: null,
          },
        },
        undefined,
        'Forbidden',
      ])
        assert.equal(keyRefusedIn(asked), false, JSON.stringify(asked));
    });

    it('reads whose fault an error answer is: the key’s (revoked, out of credit), the request’s, or neither', () => {
      // As Gemini answers a spent per-minute quota (test/fixtures/gemini/error-429.json).
      const gemini429 = {
        error: {
          code: 429,
          message: 'You exceeded your current quota, please check your plan and billing details.',
          status: 'RESOURCE_EXHAUSTED',
          details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '37s' }],
        },
      };
      const cases: [number, unknown, 'key' | 'request' | undefined][] = [
        // Out of credit, whatever is asked.
        [
          400,
          {
            type: 'error',
            error: {
              type: 'invalid_request_error',
              message:
                'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.',
            },
          },
          'key',
        ],
        [402, { type: 'error', error: { type: 'billing_error', message: 'Payment required' } }, 'key'],
        // A member's field quoted back, or a 402 that fewer max_tokens would avoid (OpenRouter): not the key's.
        [
          400,
          {
            type: 'error',
            error: {
              type: 'invalid_request_error',
              message:
                'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.: Extra inputs are not permitted',
            },
          },
          undefined,
        ],
        [
          400,
          {
            error: {
              message: 'Unrecognized request argument supplied: api key is invalid',
              type: 'invalid_request_error',
            },
          },
          undefined,
        ],
        [
          402,
          {
            error: {
              message:
                'This request requires more credits, or fewer max_tokens. You requested up to 32000 tokens, but can only afford 8000.',
              code: 402,
            },
          },
          undefined,
        ],
        [403, { message: 'The security token included in the request is invalid.' }, 'key'],
        [
          429,
          {
            error: {
              message: 'You exceeded your current quota, please check your plan and billing details.',
              type: 'insufficient_quota',
              param: null,
              code: 'insufficient_quota',
            },
          },
          'key',
        ],
        // Google says the same words of a per-minute quota, with a RetryInfo: a rate limit.
        [429, gemini429, undefined],
        // Google's answer to a key that is not valid is a 400.
        [
          400,
          [
            {
              error: {
                code: 400,
                message: 'API key not valid. Please pass a valid API key.',
                status: 'INVALID_ARGUMENT',
                details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID' }],
              },
            },
          ],
          'key',
        ],
        [
          401,
          { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } },
          'key',
        ],
        // What a restricted key lacks for this endpoint, and one request over the whole minute's limit.
        [
          401,
          {
            error: {
              message:
                'You have insufficient permissions for this operation. Missing scopes: api.responses.write.',
              type: 'invalid_request_error',
            },
          },
          'request',
        ],
        [
          429,
          {
            error: {
              message:
                'Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 50000.',
              type: 'tokens',
              code: 'rate_limit_exceeded',
            },
          },
          'request',
        ],
        [
          429,
          {
            type: 'error',
            error: { type: 'rate_limit_error', message: 'Number of requests has exceeded your rate limit' },
          },
          undefined,
        ],
        [
          400,
          { type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } },
          undefined,
        ],
        [
          403,
          {
            type: 'error',
            error: { type: 'permission_error', message: 'This organization has been disabled.' },
          },
          'key',
        ],
        [
          403,
          {
            error: {
              message: 'You are not allowed to sample from this model',
              type: 'invalid_request_error',
            },
          },
          'request',
        ],
      ];
      for (const [status, body, want] of cases)
        assert.equal(blameOf(status, body), want, `${status} ${JSON.stringify(body)}`);
    });

    it('reads retry-after as seconds or an HTTP date', () => {
      const now = Date.parse('2026-01-01T00:00:00Z');
      assert.equal(retryAfterMs('7', now), 7000);
      assert.equal(retryAfterMs('Thu, 01 Jan 2026 00:00:30 GMT', now), 30_000);
      assert.equal(retryAfterMs('Wed, 31 Dec 2025 00:00:00 GMT', now), 0);
      assert.equal(retryAfterMs('soon', now), undefined);
      assert.equal(retryAfterMs(undefined, now), undefined);
      // OpenAI's finer-grained header wins when both are sent.
      assert.equal(upstreamRetryAfterMs({ 'retry-after-ms': '1500', 'retry-after': '2' }, now), 1500);
      assert.equal(upstreamRetryAfterMs({ 'retry-after': '2' }, now), 2000);
    });
  });

  describe('through the bridge', () => {
    let tb: TestBridge | undefined;
    afterEach(async () => {
      await tb?.close();
      tb = undefined;
    });

    it('sends each request with one pool key, spread 2:1 by weight', async () => {
      tb = await poolBridge(up, {
        anthropicKeys: [
          { name: 'k1', key: K1, weight: 2 },
          { name: 'k2', key: K2 },
        ],
      });
      const dev = await tb.addUser('weights@example.com');
      for (let i = 0; i < 30; i++) await ask(tb, dev.key);
      assert.equal(up.count(K1), 20);
      assert.equal(up.count(K2), 10);
      assert.ok(!up.used.includes(dev.key), 'the bridge key never goes upstream');
      const metrics = await (
        await fetch(`${tb.url}/metrics`, { headers: { authorization: `Bearer ${tb.adminKey}` } })
      ).text();
      assert.match(metrics, /aibridge_upstream_key_requests_total\{provider="anthropic",key="k1"\} 20/);
      assert.match(metrics, /aibridge_upstream_key_requests_total\{provider="anthropic",key="k2"\} 10/);
      assert.ok(!metrics.includes(K1) && !metrics.includes(K2), 'no secret in metrics');
    });

    it('a 429 with retry-after cools that key down exactly that long', async () => {
      const clock = new TestClock();
      tb = await poolBridge(up, { clock });
      const dev = await tb.addUser('cooldown@example.com');
      up.once.set(K1, [{ status: 429, headers: { 'retry-after': '7' } }]);
      // The pool's other key serves the same request; k1's 429 is an attempt on its record.
      await ask(tb, dev.key);
      assert.equal(up.used.at(-1), K2);
      const [served] = await tb.interceptions(1);
      assert.equal(served!.keyName, 'k2');
      assert.deepEqual(
        served!.attempts?.map((a) => [a.keyName, a.httpStatus]),
        [['k1', 429]],
      );
      const keys = await tb.api<{ items: { name: string; state: string; cooldownUntil: string | null }[] }>(
        'GET',
        '/api/v1/providers/anthropic/keys',
        tb.adminKey,
      );
      const k1 = keys.body.items.find((k) => k.name === 'k1')!;
      assert.equal(k1.state, 'cooling');
      assert.equal(Date.parse(k1.cooldownUntil!) - clock.now(), 7000);
      const before = up.count(K1);
      clock.advance(6999);
      for (let i = 0; i < 3; i++) await ask(tb, dev.key);
      assert.equal(up.count(K1), before, 'k1 rests while cooling');
      clock.advance(1);
      for (let i = 0; i < 2; i++) await ask(tb, dev.key);
      assert.equal(up.count(K1), before + 1, 'k1 serves again at exactly 7 s');
      const metrics = await (
        await fetch(`${tb.url}/metrics`, { headers: { authorization: `Bearer ${tb.adminKey}` } })
      ).text();
      assert.match(
        metrics,
        /aibridge_upstream_key_rate_limited_total\{provider="anthropic",key="k1",status="429"\} 1/,
      );
      assert.match(metrics, /aibridge_upstream_key_cooling\{provider="anthropic",key="k1"\} 0/);
    });

    it("one key's 429s do not open the instance's circuit breaker", async () => {
      tb = await poolBridge(up, {
        anthropicKeys: [
          { name: 'k1', key: K1 },
          { name: 'k2', key: K2 },
          { name: 'k3', key: K3 },
        ],
        env: { AIBRIDGE_BREAKER_THRESHOLD: '2' },
      });
      const dev = await tb.addUser('breaker@example.com');
      up.once.set(K1, [{ status: 429, headers: { 'retry-after': '30' } }]);
      up.once.set(K2, [{ status: 429, headers: { 'retry-after': '30' } }]);
      // k1 and k2 answer 429 in turn and k3 serves; two failures in a row would open a breaker at
      // threshold 2, yet the next request is served too.
      await ask(tb, dev.key);
      assert.equal(up.used.at(-1), K3);
      await ask(tb, dev.key);
      assert.equal(up.used.at(-1), K3);
    });

    it('every key cooling: 429 with the shortest retry-after, in Anthropic and OpenAI shapes; ends on time', async () => {
      const clock = new TestClock();
      tb = await poolBridge(up, { clock });
      const dev = await tb.addUser('cooling@example.com');
      up.once.set(K1, [{ status: 429, headers: { 'retry-after': '30' } }]);
      up.once.set(K2, [{ status: 529, headers: { 'retry-after': '10' } }]);
      await assert.rejects(ask(tb, dev.key));
      await assert.rejects(ask(tb, dev.key));
      const metrics = await (
        await fetch(`${tb.url}/metrics`, { headers: { authorization: `Bearer ${tb.adminKey}` } })
      ).text();
      assert.match(metrics, /aibridge_upstream_key_cooling\{provider="anthropic",key="k1"\} 1/);
      assert.match(metrics, /aibridge_upstream_key_cooling\{provider="anthropic",key="k2"\} 1/);
      const sent = up.used.length;
      const err = await ask(tb, dev.key).then(
        () => assert.fail('expected a 429'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof Anthropic.RateLimitError, String(err));
      assert.equal(err.headers?.get('retry-after'), '10');
      assert.equal((err.error as { error: { type: string } }).error.type, 'rate_limit_error');
      assert.match(err.message, /anthropic/);
      assert.equal(up.used.length, sent, 'the provider is not contacted');

      up.once.set(O1, [{ status: 429, headers: { 'retry-after': '20' } }]);
      up.once.set(O2, [{ status: 429, headers: { 'retry-after': '40' } }]);
      const openai = new OpenAI({ baseURL: `${tb.url}/openai/v1`, apiKey: dev.key, maxRetries: 0 });
      const chat = () =>
        openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      await assert.rejects(chat());
      await assert.rejects(chat());
      const oerr = await chat().then(
        () => assert.fail('expected a 429'),
        (e: unknown) => e,
      );
      assert.ok(oerr instanceof OpenAI.RateLimitError, String(oerr));
      assert.equal(oerr.headers?.get('retry-after'), '20');
      assert.equal(oerr.code, 'upstream_keys_cooling');

      clock.advance(10_000);
      const ok = await ask(tb, dev.key);
      assert.equal(ok.content[0]?.type, 'text');
      assert.equal(up.used.at(-1), K2, 'the key with the shortest cooldown serves first');
      const recs = await tb.interceptions(6);
      const refused = recs.find((r) => r.error?.type === 'upstream_keys_cooling');
      assert.ok(refused, 'the refusal is recorded');
    });

    it("a key's tpm counts the tokens its answers used; the minute frees on time", async () => {
      const clock = new TestClock();
      tb = await poolBridge(up, { clock, anthropicKeys: [{ name: 'k1', key: K1, tpm: 10 }] });
      const dev = await tb.addUser('tpm@example.com');
      // Each answer uses 5 input + 3 output tokens: 16 of 10 after two.
      await ask(tb, dev.key);
      await ask(tb, dev.key);
      const err = await ask(tb, dev.key).then(
        () => assert.fail('expected a 429'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof Anthropic.RateLimitError, String(err));
      assert.equal(err.headers?.get('retry-after'), '60');
      assert.equal(up.count(K1), 2);
      clock.advance(60_000);
      await ask(tb, dev.key);
      assert.equal(up.count(K1), 3);
    });

    it('a 401 takes the key out with an alert and a log line naming it; all refused → 502 naming the instance', async () => {
      tb = await poolBridge(up);
      const dev = await tb.addUser('auth@example.com');
      up.always.set(K1, { status: 401 });
      // k1's 401 takes it out and k2 serves the same request.
      for (let i = 0; i < 5; i++) await ask(tb, dev.key);
      assert.equal(up.count(K1), 1, 'k1 is never tried again');
      const alerts = await eventually(async () => {
        const r = await tb!.api<{ items: Alert[] }>('GET', '/api/v1/alerts?limit=50', tb!.adminKey);
        const a = r.body.items.filter((x) => x.rule === 'upstream_key_auth_failed');
        return a.length > 0 ? a : undefined;
      });
      assert.equal(alerts.length, 1);
      assert.equal(alerts[0]!.kind, 'upstream');
      assert.match(alerts[0]!.message, /"anthropic".*"k1"/);
      assert.ok(tb.logs.some((l) => l.includes('upstream_key_auth_failed') && l.includes('k1')));

      up.always.set(K2, { status: 401 });
      // The last key refused too: no key is left, and the pool's refusal names the instance.
      await assert.rejects(
        ask(tb, dev.key),
        (e: unknown) => e instanceof Anthropic.APIError && e.status === 502,
      );
      const sent = up.used.length;
      const err = await ask(tb, dev.key).then(
        () => assert.fail('expected a 502'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof Anthropic.APIError);
      assert.equal(err.status, 502);
      assert.match(
        (err.error as { error: { message: string } }).error.message,
        /provider instance "anthropic"/,
      );
      assert.equal(up.used.length, sent);
      const keys = await tb.api<{ items: { name: string; state: string; authFailures: number }[] }>(
        'GET',
        '/api/v1/providers/anthropic/keys',
        tb.adminKey,
      );
      assert.deepEqual(
        keys.body.items.map((k) => [k.name, k.state]),
        [
          ['k1', 'auth_failed'],
          ['k2', 'auth_failed'],
        ],
      );

      // An admin re-enables k2 (its key fixed upstream): it serves again.
      up.always.delete(K2);
      const patched = await tb.api<{ state: string }>(
        'PATCH',
        '/api/v1/providers/anthropic/keys/k2',
        tb.adminKey,
        { disabled: false },
      );
      assert.equal(patched.status, 200);
      assert.equal(patched.body.state, 'active');
      await ask(tb, dev.key);
      assert.equal(up.used.at(-1), K2);
      for (const l of tb.logs) assert.ok(!l.includes(K1) && !l.includes(K2), 'no secret in any log line');
    });

    it("a 403 is the request's, not the key's: the client gets it, no other key is tried, every key stays in rotation", async () => {
      // A member's request can draw a 403 from any key (a model, file or cached content the
      // organisation's project may not use); taken as the key's, a few such requests emptied the pool.
      tb = await poolBridge(up);
      const dev = await tb.addUser('forbidden@example.com');
      up.always.set(K1, { status: 403 });
      up.always.set(K2, { status: 403 });
      const before = up.used.length;
      for (let i = 0; i < 4; i++)
        await assert.rejects(
          ask(tb, dev.key),
          (e: unknown) => e instanceof Anthropic.APIError && e.status === 403,
        );
      assert.equal(up.used.length - before, 4, 'each request asked one key, once');
      const keys = await tb.api<{ items: { name: string; state: string }[] }>(
        'GET',
        '/api/v1/providers/anthropic/keys',
        tb.adminKey,
      );
      assert.deepEqual(
        keys.body.items.map((k) => [k.name, k.state]),
        [
          ['k1', 'active'],
          ['k2', 'active'],
        ],
      );
      up.always.delete(K1);
      up.always.delete(K2);
      const other = await tb.addUser('bystander@example.com');
      for (let i = 0; i < 2; i++) await ask(tb, other.key);
    });

    it('a 403 whose body names the key (leaked, suspended) takes that key out, with its alert, and the request is served by another', async () => {
      tb = await poolBridge(up);
      const dev = await tb.addUser('leaked@example.com');
      // What Gemini answers for a key reported as leaked, and Anthropic for a disabled organisation.
      up.always.set(K2, {
        status: 403,
        body: {
          error: {
            code: 403,
            message: 'Your API key was reported as leaked. Please use another API key.',
            status: 'PERMISSION_DENIED',
          },
        },
      });
      for (let i = 0; i < 4; i++) assert.equal((await ask(tb, dev.key)).content[0]?.type, 'text');
      assert.equal(up.count(K2), 1, 'k2 is never tried again');
      const keys = await tb.api<{ items: { name: string; state: string; authFailures: number }[] }>(
        'GET',
        '/api/v1/providers/anthropic/keys',
        tb.adminKey,
      );
      assert.deepEqual(
        keys.body.items.map((k) => [k.name, k.state, k.authFailures]),
        [
          ['k1', 'active', 0],
          ['k2', 'auth_failed', 1],
        ],
      );
      await eventually(async () => {
        const r = await tb!.api<{ items: Alert[] }>('GET', '/api/v1/alerts?limit=50', tb!.adminKey);
        return (
          r.body.items.some((x) => x.rule === 'upstream_key_auth_failed' && /"k2"/.test(x.message)) ||
          undefined
        );
      });
      up.always.set(K1, {
        status: 403,
        body: {
          type: 'error',
          error: { type: 'permission_error', message: 'This organization has been disabled.' },
        },
      });
      await assert.rejects(
        ask(tb, dev.key),
        (e: unknown) => e instanceof Anthropic.APIError && e.status === 502,
      );
    });

    it('admin API: add, list, patch, delete; the secret never comes back, nor reaches logs or the disk', async () => {
      tb = await poolBridge(up);
      const dev = await tb.addUser('api@example.com');
      const member = await tb.api('GET', '/api/v1/providers/anthropic/keys', dev.key);
      assert.equal(member.status, 403);

      const added = await tb.api<Record<string, unknown>>(
        'POST',
        '/api/v1/providers/anthropic/keys',
        tb.adminKey,
        { name: 'k3', key: K3, weight: 3, rpm: 100 },
      );
      assert.equal(added.status, 201);
      assert.equal(added.body.name, 'k3');
      assert.equal(added.body.source, 'api');
      assert.equal(added.body.weight, 3);
      assert.equal(added.body.state, 'active');
      assert.ok(!JSON.stringify(added.body).includes(K3));

      const list = await tb.api<{ items: Record<string, unknown>[] }>(
        'GET',
        '/api/v1/providers/anthropic/keys',
        tb.adminKey,
      );
      assert.deepEqual(
        list.body.items.map((k) => k.name),
        ['k1', 'k2', 'k3'],
      );
      const text = JSON.stringify(list.body);
      for (const s of [K1, K2, K3]) assert.ok(!text.includes(s));

      // Weights 1:1:3 over 10 requests: k3 carries 6.
      for (let i = 0; i < 10; i++) await ask(tb, dev.key);
      assert.equal(up.count(K3), 6);

      const disabled = await tb.api<{ state: string }>(
        'PATCH',
        '/api/v1/providers/anthropic/keys/k1',
        tb.adminKey,
        { disabled: true },
      );
      assert.equal(disabled.body.state, 'disabled');
      const k1Before = up.count(K1);
      for (let i = 0; i < 5; i++) await ask(tb, dev.key);
      assert.equal(up.count(K1), k1Before, 'a disabled file key is not used');

      assert.equal((await tb.api('DELETE', '/api/v1/providers/anthropic/keys/k3', tb.adminKey)).status, 204);
      const k3Before = up.count(K3);
      for (let i = 0; i < 3; i++) await ask(tb, dev.key);
      assert.equal(up.count(K3), k3Before);

      // Refusals, each with its stable code naming the field.
      const bad = async (
        method: string,
        route: string,
        body: unknown,
        status: number,
        code: string,
        field?: string,
      ) => {
        const r = await tb!.api<{ error: { code: string; message: string } }>(
          method,
          route,
          tb!.adminKey,
          body,
        );
        assert.equal(r.status, status, JSON.stringify(r.body));
        assert.equal(r.body.error.code, code);
        if (field) assert.match(r.body.error.message, new RegExp(`^${field}:`));
      };
      const keys = '/api/v1/providers/anthropic/keys';
      await bad('POST', keys, { name: 'Bad Name', key: 'x' }, 400, 'invalid_provider_key', 'name');
      await bad('POST', keys, { name: 'k4' }, 400, 'invalid_provider_key', 'key');
      await bad('POST', keys, { name: 'k4', key: 'x', weight: 0 }, 400, 'invalid_provider_key', 'weight');
      await bad('POST', keys, { name: 'k4', key: 'x', rpm: 1.5 }, 400, 'invalid_provider_key', 'rpm');
      await bad('POST', keys, { name: 'k4', key: 'x', secret: 1 }, 400, 'invalid_provider_key', 'secret');
      await bad('POST', keys, { name: 'k1', key: 'x' }, 409, 'provider_key_exists');
      await bad('PATCH', `${keys}/k2`, { disabled: 'yes' }, 400, 'invalid_provider_key', 'disabled');
      await bad('PATCH', `${keys}/nope`, { weight: 2 }, 404, 'provider_key_not_found');
      await bad('DELETE', `${keys}/k1`, undefined, 409, 'provider_key_in_file');
      await bad('GET', '/api/v1/providers/nope/keys', undefined, 404, 'provider_not_found');

      // Sealed at rest: the data dir holds no secret added through the API, and no log line does.
      await tb.api('POST', keys, tb.adminKey, { name: 'k5', key: K3 });
      await tb.close();
      const files = await fs.readdir(tb.dataDir, { recursive: true });
      for (const f of files) {
        const p = path.join(tb.dataDir, String(f));
        if ((await fs.stat(p)).isFile())
          assert.ok(!(await fs.readFile(p, 'utf8')).includes(K3), `${f} holds the secret`);
      }
      for (const l of tb.logs)
        for (const s of [K1, K2, K3]) assert.ok(!l.includes(s), 'no secret in any log line');
      assert.ok(tb.logs.some((l) => l.includes('provider key added') && l.includes('"key":"k3"')));

      // A restart reads the stored key back (unsealed) and keeps the file key's override.
      tb = await poolBridge(up, { dir: tb.dataDir });
      const again = await tb.api<{ items: { name: string; state: string; source: string }[] }>(
        'GET',
        keys,
        tb.adminKey,
      );
      assert.deepEqual(
        again.body.items.map((k) => [k.name, k.state, k.source]),
        [
          ['k1', 'disabled', 'file'],
          ['k2', 'active', 'file'],
          ['k5', 'active', 'api'],
        ],
      );
      const dev2 = await tb.addUser('api2@example.com');
      for (let i = 0; i < 2; i++) await ask(tb, dev2.key);
      assert.equal(up.used.at(-1), K3, 'the unsealed k5 secret reaches the upstream');
    });

    it('an instance with one apiKey gains a pool, its own key named "default", when keys are added', async () => {
      const dir = await tempDir();
      const file = await providersFile(dir, {
        anthropic: { type: 'anthropic', baseUrl: up.url, apiKey: K1 },
        aws: { type: 'bedrock', region: 'us-east-1' },
      });
      tb = await startBridge(
        up.url,
        { AIBRIDGE_PROVIDERS_FILE: file, AIBRIDGE_MCP_CREDENTIALS_KEY: CREDENTIALS_KEY },
        dir,
      );
      const dev = await tb.addUser('default@example.com');
      await ask(tb, dev.key);
      assert.equal(up.used.at(-1), K1);
      const r = await tb.api('POST', '/api/v1/providers/anthropic/keys', tb.adminKey, {
        name: 'extra',
        key: K2,
      });
      assert.equal(r.status, 201);
      const list = await tb.api<{ items: { name: string }[] }>(
        'GET',
        '/api/v1/providers/anthropic/keys',
        tb.adminKey,
      );
      assert.deepEqual(
        list.body.items.map((k) => k.name),
        ['default', 'extra'],
      );
      for (let i = 0; i < 4; i++) await ask(tb, dev.key);
      assert.equal(up.count(K2), 2);
      // Bedrock signs with the AWS credential chain: no pool to show or add to.
      const aws = await tb.api<{ error: { code: string; message: string } }>(
        'POST',
        '/api/v1/providers/aws/keys',
        tb.adminKey,
        { name: 'k', key: 'x' },
      );
      assert.equal(aws.status, 400);
      assert.equal(aws.body.error.code, 'invalid_provider_key');
      assert.match(aws.body.error.message, /^instance: .*"aws" takes no keys/);
    });

    it('a bridge started with no upstream key becomes ready, and serves, once a key is added at run time', async () => {
      tb = await startBridge(up.url, {
        AIBRIDGE_ANTHROPIC_API_KEY: '',
        AIBRIDGE_OPENAI_API_KEY: '',
        AIBRIDGE_MCP_CREDENTIALS_KEY: CREDENTIALS_KEY,
      });
      const before = await tb.api<{ status: string }>('GET', '/readyz', null);
      assert.equal(before.status, 503);
      const dev = await tb.addUser('late-key@example.com');
      await assert.rejects(
        ask(tb, dev.key),
        (err) => err instanceof Anthropic.APIError && err.status === 503,
      );
      const added = await tb.api('POST', '/api/v1/providers/anthropic/keys', tb.adminKey, {
        name: 'first',
        key: K3,
      });
      assert.equal(added.status, 201);
      // A load balancer's probe would otherwise keep this replica out of rotation for good.
      const after = await tb.api<{ status: string; upstreams: Record<string, { configured: boolean }> }>(
        'GET',
        '/readyz',
        tb.adminKey,
      );
      assert.equal(after.status, 200);
      assert.equal(after.body.status, 'ready');
      assert.equal(after.body.upstreams.anthropic?.configured, true);
      assert.equal(after.body.upstreams.openai?.configured, false);
      await ask(tb, dev.key);
      assert.equal(up.used.at(-1), K3);
    });

    it('without a credentials key, a key cannot be stored (503), and nothing is', async () => {
      tb = await poolBridge(up, { env: { AIBRIDGE_MCP_CREDENTIALS_KEY: '' } });
      const r = await tb.api<{ error: { code: string } }>(
        'POST',
        '/api/v1/providers/anthropic/keys',
        tb.adminKey,
        {
          name: 'k3',
          key: K3,
        },
      );
      assert.equal(r.status, 503);
      assert.equal(r.body.error.code, 'provider_key_not_storable');
    });
  });

  describe('the providers file', () => {
    const load = async (providers: unknown, env: Record<string, string> = {}) => {
      const file = await providersFile(await tempDir(), providers);
      return loadConfig(
        { port: '0', 'data-dir': await tempDir() },
        { AIBRIDGE_PROVIDERS_FILE: file, ...env },
      );
    };
    const refused = async (providers: unknown, message: RegExp) => {
      await assert.rejects(
        load(providers),
        (e: unknown) => e instanceof ConfigError && message.test(e.message),
      );
    };

    it('reads keys, secrets from the environment included, in place of apiKey', async () => {
      const c = await load(
        {
          openai: {
            type: 'openai',
            keys: [
              { name: 'a', key: 'sk-a', weight: 2, rpm: 100, tpm: 100000 },
              { name: 'b', key: { fromEnv: 'POOL_KEY_B' } },
            ],
          },
        },
        { POOL_KEY_B: 'sk-b' },
      );
      assert.deepEqual(c.upstreams.openai?.keys, [
        { name: 'a', key: 'sk-a', weight: 2, rpm: 100, tpm: 100000 },
        { name: 'b', key: 'sk-b' },
      ]);
      assert.equal(c.upstreams.openai?.configured, true);
    });

    it('refuses bad pools naming the entry and field', async () => {
      const k = { name: 'a', key: 'sk-a' };
      await refused(
        { anthropic: { type: 'anthropic', apiKey: 'x', keys: [k] } },
        /providers\.anthropic\.keys: .*apiKey/,
      );
      await refused(
        { anthropic: { type: 'anthropic', keys: [] } },
        /providers\.anthropic\.keys: expected a non-empty array/,
      );
      await refused(
        { anthropic: { type: 'anthropic', keys: [{ name: 'A!', key: 'x' }] } },
        /providers\.anthropic\.keys\[0\]\.name: expected a name/,
      );
      await refused(
        { anthropic: { type: 'anthropic', keys: [k, k] } },
        /providers\.anthropic\.keys\[1\]\.name: "a" is given twice/,
      );
      await refused(
        { anthropic: { type: 'anthropic', keys: [{ ...k, weight: -1 }] } },
        /providers\.anthropic\.keys\[0\]\.weight: expected a positive number/,
      );
      await refused(
        { anthropic: { type: 'anthropic', keys: [{ ...k, rpm: 0.5 }] } },
        /providers\.anthropic\.keys\[0\]\.rpm: expected a positive integer/,
      );
      await refused(
        { anthropic: { type: 'anthropic', keys: [{ ...k, extra: 1 }] } },
        /providers\.anthropic\.keys\[0\]\.extra: unknown field/,
      );
      await refused(
        { anthropic: { type: 'anthropic', keys: [{ name: 'a', key: { fromEnv: 'POOL_UNSET_VAR' } }] } },
        /providers\.anthropic\.keys\[0\]\.key: the environment variable POOL_UNSET_VAR is not set/,
      );
      await refused(
        { aws: { type: 'bedrock', region: 'us-east-1', keys: [k] } },
        /providers\.aws\.keys: an instance of type bedrock takes no key pool/,
      );
    });
  });

  describe('two replicas on one PostgreSQL database', () => {
    it('a key disabled through one replica is not used by the other on its next request', async () => {
      const env = {
        AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('keypools'),
        AIBRIDGE_KEY_HASH_SECRET: randomBytes(32).toString('base64url'),
      };
      const dir = await tempDir();
      const a = await poolBridge(up, { env, dir });
      const b = await poolBridge(up, { env, dir });
      try {
        const dev = await a.addUser('replicas@example.com');
        for (let i = 0; i < 2; i++) await ask(b, dev.key);
        assert.equal(up.count(K1), 1);
        const r = await a.api('PATCH', '/api/v1/providers/anthropic/keys/k1', a.adminKey, { disabled: true });
        assert.equal(r.status, 200);
        // The change feed reloads B's pool; then B's next requests never carry k1.
        await eventually(async () => {
          const keys = await b.api<{ items: { name: string; state: string }[] }>(
            'GET',
            '/api/v1/providers/anthropic/keys',
            b.adminKey,
          );
          return keys.body.items.find((k) => k.name === 'k1')?.state === 'disabled' ? true : undefined;
        });
        for (let i = 0; i < 4; i++) await ask(b, dev.key);
        assert.equal(up.count(K1), 1, 'B did not use the key A disabled');

        // A key added through B is used by A.
        const added = await b.api('POST', '/api/v1/providers/anthropic/keys', b.adminKey, {
          name: 'k3',
          key: K3,
        });
        assert.equal(added.status, 201);
        await eventually(async () => {
          const keys = await a.api<{ items: { name: string }[] }>(
            'GET',
            '/api/v1/providers/anthropic/keys',
            a.adminKey,
          );
          return keys.body.items.some((k) => k.name === 'k3') ? true : undefined;
        });
        for (let i = 0; i < 2; i++) await ask(a, dev.key);
        assert.ok(up.count(K3) >= 1, 'A uses the key added through B');
      } finally {
        await b.close();
        await a.close();
      }
    });
  });
});
