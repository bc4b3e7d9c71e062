import assert from 'node:assert/strict';
import http from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { OpenAIMock } from '../helpers/openai-mock';

const MSG = { model: 'claude-sonnet-4-6', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] };
const CHAT = { model: 'gpt-4.1', messages: [{ role: 'user', content: 'hi' }] };

/** A raw request: fetch would normalise the path itself before it reaches the bridge. */
function raw(
  base: string,
  method: string,
  path: string,
  key: string,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  const { port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      },
      (res) => {
        let b = '';
        res.on('data', (c) => {
          b += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe('provider paths: nothing reaches a provider ungoverned', () => {
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;
  let key: string;

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    tb = await startBridge(anthropic.url, { AIBRIDGE_OPENAI_BASE_URL: openai.url });
    key = (await tb.addUser('paths@example.com')).key;
  });
  after(async () => {
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  it('meters every spelling of a metered path: trailing slash, ;parameters, duplicate slashes, case', async () => {
    const spellings = [
      '/anthropic/v1/messages/',
      '/anthropic/v1/messages;x=1',
      '/anthropic//v1//messages',
      '/anthropic/V1/Messages',
      '/anthropic/v1/messages/;a=b/?beta=true',
    ];
    const before = anthropic.messageRequests().length;
    for (const p of spellings) {
      const res = await raw(tb.url, 'POST', p, key, MSG);
      assert.equal(res.status, 200, `${p}: ${res.body}`);
    }
    const seen = anthropic.messageRequests().slice(before);
    assert.equal(seen.length, spellings.length, 'each went upstream to the canonical path');
    assert.equal(seen.at(-1)!.url, '/v1/messages?beta=true');
    const records = await tb.interceptions(spellings.length);
    assert.equal(records.filter((r) => r.userEmail === 'paths@example.com').length, spellings.length);

    const chat = await raw(tb.url, 'POST', '/openai/v1/chat/completions/', key, CHAT);
    assert.equal(chat.status, 200, chat.body);
    assert.equal(openai.requests.at(-1)!.url.split('?')[0], '/v1/chat/completions');
    const all = await tb.interceptions(spellings.length + 1);
    assert.ok(all.some((r) => r.provider === 'openai' && r.userEmail === 'paths@example.com'));
  });

  it('refuses every other path with 404 in the API’s shape, never forwarding it', async () => {
    const beforeA = anthropic.requests.length;
    const beforeO = openai.requests.length;
    const refused: [string, string][] = [
      ['POST', '/anthropic/v1/messages/batches'],
      ['GET', '/anthropic/v1/messages/batches/msgbatch_1'],
      ['POST', '/anthropic/v1/files'],
      ['GET', '/anthropic/v1/files'],
      ['DELETE', '/anthropic/v1/files/file_1'],
      ['GET', '/anthropic/v1/messages'],
      ['POST', '/anthropic/v1/complete'],
      ['POST', '/openai/v1/embeddings'],
      ['POST', '/openai/v1/images/generations'],
      ['POST', '/openai/v1/audio/speech'],
      ['POST', '/openai/v1/batches'],
      ['POST', '/openai/v1/files'],
      ['POST', '/openai/v1/completions'],
      ['GET', '/openai/v1/chat/completions'],
    ];
    for (const [method, p] of refused) {
      const res = await raw(tb.url, method, p, key, method === 'POST' ? { model: 'x' } : undefined);
      assert.equal(res.status, 404, `${method} ${p}`);
      const body = JSON.parse(res.body) as { type?: string; error?: { type?: string; code?: string } };
      if (p.startsWith('/anthropic')) {
        assert.equal(body.type, 'error', `${p} in Anthropic's shape`);
        assert.equal(body.error?.type, 'not_found_error');
      } else assert.ok(body.error && typeof body.error === 'object', `${p} in OpenAI's shape`);
    }
    assert.equal(anthropic.requests.length, beforeA, 'nothing forwarded to Anthropic');
    assert.equal(openai.requests.length, beforeO, 'nothing forwarded to OpenAI');
  });

  it('a client given a base URL with a part missing or too many is told the base URL to give instead', async () => {
    const beforeA = anthropic.requests.length;
    const beforeO = openai.requests.length;
    /** The message of the error an SDK throws for a call through `baseURL`. */
    const refusal = async (call: () => Promise<unknown>): Promise<string> => {
      const err = await call().then(
        () => assert.fail('served'),
        (e: unknown) => e as { status?: number; message?: string },
      );
      // A 400: a 404 is an unknown model to Claude Code and Copilot CLI, which then hide the message.
      assert.equal(err.status, 400);
      return err.message ?? '';
    };
    const openaiAt = (base: string) =>
      refusal(() =>
        new OpenAI({ baseURL: `${tb.url}${base}`, apiKey: key, maxRetries: 0 }).chat.completions.create({
          model: 'gpt-4.1',
          messages: [{ role: 'user', content: 'hi' }],
        }),
      );
    assert.match(await openaiAt('/openai'), /base URL <bridge URL>\/openai\/v1, not <bridge URL>\/openai /);
    assert.match(await openaiAt(''), /base URL <bridge URL>\/openai\/v1, not the bridge URL alone/);
    const responses = await refusal(() =>
      new OpenAI({ baseURL: `${tb.url}/openai`, apiKey: key, maxRetries: 0 }).responses.create({
        model: 'gpt-5',
        input: 'hi',
      }),
    );
    assert.match(responses, /POST \/openai\/v1\/responses \(provider openai\)/);
    const anthropicAt = (base: string) =>
      refusal(() =>
        new Anthropic({ baseURL: `${tb.url}${base}`, apiKey: key, maxRetries: 0 }).messages.create({
          model: 'claude-sonnet-4-6',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'hi' }],
        }),
      );
    assert.match(
      await anthropicAt('/anthropic/v1'),
      /base URL <bridge URL>\/anthropic, not <bridge URL>\/anthropic\/v1 /,
    );
    assert.match(await anthropicAt(''), /base URL <bridge URL>\/anthropic, not the bridge URL alone/);
    // Other missing routes say no more than before.
    assert.doesNotMatch((await raw(tb.url, 'POST', '/openai/v1/embeddings', key, {})).body, /base URL/);
    assert.equal(anthropic.requests.length, beforeA, 'nothing forwarded to Anthropic');
    assert.equal(openai.requests.length, beforeO, 'nothing forwarded to OpenAI');
  });

  it('a key pasted into a base URL (so into the path) is in no log line', async () => {
    for (const p of [
      `/anthropic/${key}/v1/messages`,
      `/${key}/v1/messages`,
      `/anthropic/v1/models/${key}`,
      `/aib%5F${key.slice(4)}/v1/messages`,
    ]) {
      const r = await raw(tb.url, p.includes('models') ? 'GET' : 'POST', p, key, MSG);
      assert.ok(r.status >= 400 || p.includes('models'), `${p}: ${r.status}`);
    }
    await new Promise((r) => setTimeout(r, 50));
    const logs = tb.logs.join('');
    assert.match(logs, /aib_\*\*\*/, 'the paths were logged, masked');
    assert.ok(!logs.includes(key.slice(4)), 'the key appears in no log line, escaped or not');
  });

  it('forwards the allow-listed free endpoints and logs each with the user', async () => {
    const count = await raw(tb.url, 'POST', '/anthropic/v1/messages/count_tokens/', key, MSG);
    assert.equal(count.status, 200, count.body);
    assert.equal(anthropic.requests.at(-1)!.url, '/v1/messages/count_tokens');
    const line = tb.logs.find((l) => l.includes('"passthrough"') && l.includes('count_tokens'));
    assert.ok(line, 'a log line for the passthrough');
    assert.match(line, /"userId":"[^"]+"/, 'attributed to the user');
  });
});
