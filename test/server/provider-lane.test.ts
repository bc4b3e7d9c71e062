import assert from 'node:assert/strict';
import http from 'node:http';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { GEMINI_UPSTREAM_KEY, type GeminiMock, startGeminiMock } from '../helpers/gemini-mock';
import { OpenAIMock } from '../helpers/openai-mock';

interface Sent {
  /** Over a kept-alive connection (the default asks for `Connection: close`). */
  keepAlive?: boolean;
  /** The body is left unfinished: the request never ends. */
  unfinished?: boolean;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  /** Written as given; an array is written chunk by chunk (chunked transfer encoding). */
  body?: string | string[];
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function send(base: string, s: Sent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // The path as given (a URL string would be normalised: `..` resolved before it is sent).
    const { hostname, port } = new URL(base);
    const req = http.request({
      hostname,
      port,
      path: s.path,
      method: s.method ?? 'POST',
      headers: s.headers ?? {},
      agent: s.keepAlive ? new http.Agent({ keepAlive: true }) : false,
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    if (Array.isArray(s.body)) for (const c of s.body) req.write(c);
    else if (s.body !== undefined) req.write(s.body);
    if (!s.unfinished) req.end();
  });
}

const MESSAGE = JSON.stringify({
  model: 'claude-sonnet-4-5',
  max_tokens: 64,
  messages: [{ role: 'user', content: 'hello' }],
});

/** What must be the same whichever way in served the request: no dates, ids or timings. */
function comparable(a: Answer): unknown {
  const {
    date: _d,
    'request-id': _r,
    'x-request-id': _x,
    'x-aibridge-interception-id': _i,
    'keep-alive': _k,
    ...headers
  } = a.headers;
  let body: unknown = a.body;
  try {
    const parsed = JSON.parse(a.body) as Record<string, unknown>;
    if (parsed && typeof parsed === 'object') delete parsed.id;
    body = parsed;
  } catch {
    // Not JSON (a stream): compared as text with its ids taken out.
    body = a.body.replace(/"id":"[^"]*"/g, '"id":"…"');
  }
  return { status: a.status, headers, body };
}

describe('provider lane: metered calls served ahead of fastify', function () {
  this.timeout(30_000);
  let mock: AnthropicMock;
  let openai: OpenAIMock;
  let gemini: GeminiMock;
  let lane: TestBridge;
  let routed: TestBridge;
  let keys: { lane: string; routed: string };

  before(async () => {
    mock = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    gemini = await startGeminiMock();
    const env = {
      AIBRIDGE_OPENAI_BASE_URL: openai.url,
      AIBRIDGE_GEMINI_BASE_URL: gemini.origin,
      AIBRIDGE_GEMINI_API_KEY: GEMINI_UPSTREAM_KEY,
      AIBRIDGE_BODY_LIMIT: '4096',
      AIBRIDGE_MAX_JSON_DEPTH: '8',
    };
    lane = await startBridge(mock.url, env);
    routed = await startBridge(mock.url, env, undefined, { providerLane: false });
    keys = {
      lane: (await lane.addUser('dev@lane.test')).key,
      routed: (await routed.addUser('dev@lane.test')).key,
    };
  });

  after(async () => {
    await lane?.close();
    await routed?.close();
    await mock?.stop();
    await openai?.stop();
    await gemini?.stop();
  });

  /** Sends the same request to both bridges (the key put in where `KEY` is) and returns both answers. */
  async function both(s: Sent): Promise<{ viaLane: Answer; viaRouter: Answer; taken: number }> {
    const withKey = (key: string): Sent => ({
      ...s,
      path: s.path.replace('{KEY}', key),
      headers: Object.fromEntries(
        Object.entries(s.headers ?? {}).map(([k, v]) => [k, v.replace('KEY', key)]),
      ),
    });
    const before = lane.bridge.lane.taken;
    const viaLane = await send(lane.url, withKey(keys.lane));
    const taken = lane.bridge.lane.taken - before;
    const viaRouter = await send(routed.url, withKey(keys.routed));
    assert.equal(routed.bridge.lane.taken, 0, 'the routed bridge has no lane in front');
    return { viaLane, viaRouter, taken };
  }

  const json = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'KEY' };

  it('takes a metered call and answers it as fastify does, recorded the same', async () => {
    const { viaLane, viaRouter, taken } = await both({
      path: '/anthropic/v1/messages',
      headers: json,
      body: MESSAGE,
    });
    assert.equal(taken, 1);
    assert.equal(viaLane.status, 200);
    assert.deepEqual(comparable(viaLane), comparable(viaRouter));
    const [a] = await lane.interceptions(1);
    const [b] = await routed.interceptions(1);
    assert.ok(a && b);
    for (const field of [
      'model',
      'status',
      'httpStatus',
      'usage',
      'costUsd',
      'userEmail',
      'provider',
    ] as const)
      assert.deepEqual(a[field], b[field], field);
  });

  it('streams byte for byte the same events', async () => {
    const body = JSON.stringify({ ...JSON.parse(MESSAGE), stream: true });
    const { viaLane, viaRouter, taken } = await both({ path: '/anthropic/v1/messages', headers: json, body });
    assert.equal(taken, 1);
    assert.match(String(viaLane.headers['content-type']), /text\/event-stream/);
    assert.deepEqual(comparable(viaLane), comparable(viaRouter));
    assert.match(viaLane.body, /event: message_stop/);
  });

  const refusals: [string, Sent][] = [
    [
      'a bad key',
      { path: '/anthropic/v1/messages', headers: { ...json, 'x-api-key': 'aib_nope' }, body: MESSAGE },
    ],
    [
      'no key',
      { path: '/anthropic/v1/messages', headers: { 'content-type': 'application/json' }, body: MESSAGE },
    ],
    ['malformed JSON', { path: '/anthropic/v1/messages', headers: json, body: '{"model":' }],
    ['an empty body', { path: '/anthropic/v1/messages', headers: json, body: '' }],
    ['a JSON array', { path: '/anthropic/v1/messages', headers: json, body: '[1,2]' }],
    [
      'JSON nested too deep',
      { path: '/anthropic/v1/messages', headers: json, body: `${'['.repeat(20)}${']'.repeat(20)}` },
    ],
    [
      'a declared length over the limit',
      { path: '/anthropic/v1/messages', headers: json, body: `{"x":"${'a'.repeat(5000)}"}` },
    ],
    [
      'a chunked body growing past the limit',
      {
        path: '/anthropic/v1/messages',
        headers: json,
        body: ['{"x":"', 'a'.repeat(3000), 'a'.repeat(3000), '"}'],
      },
    ],
    [
      'an OpenAI call with a bad key',
      {
        path: '/openai/v1/chat/completions',
        headers: { 'content-type': 'application/json', authorization: 'Bearer aib_nope' },
        body: '{"model":"gpt-4o","messages":[]}',
      },
    ],
    [
      'an OpenAI call with malformed JSON',
      {
        path: '/openai/v1/chat/completions',
        headers: { 'content-type': 'application/json; charset=utf-8', authorization: 'Bearer KEY' },
        body: '{',
      },
    ],
  ];
  for (const [what, s] of refusals)
    it(`refuses ${what} exactly as fastify does, in the provider's shape`, async () => {
      const { viaLane, viaRouter, taken } = await both(s);
      assert.equal(taken, 1, 'the lane took it');
      assert.ok(viaLane.status >= 400, `${viaLane.status} ${viaLane.body}`);
      assert.deepEqual(comparable(viaLane), comparable(viaRouter));
      // Both say it the provider's way: Anthropic's `{type:"error",error:{…}}`, OpenAI's `{error:{…}}`.
      const parsed = JSON.parse(viaLane.body) as { type?: string; error: { message: string } };
      assert.equal(typeof parsed.error.message, 'string');
      if (s.path.startsWith('/anthropic')) assert.equal(parsed.type, 'error');
    });

  it('closes a kept-alive connection whose body was refused, as fastify does', async () => {
    for (const body of [
      `{"x":"${'a'.repeat(5000)}"}`,
      ['{"x":"', 'a'.repeat(3000), 'a'.repeat(3000), '"}'],
    ]) {
      const { viaLane, viaRouter, taken } = await both({
        keepAlive: true,
        path: '/anthropic/v1/messages',
        headers: json,
        body,
      });
      assert.equal(taken, 1);
      assert.equal(viaLane.status, 413);
      assert.equal(viaLane.headers.connection, 'close', 'the rest of the body is not read');
      assert.deepEqual(comparable(viaLane), comparable(viaRouter));
    }
    // A refused key with the body still coming: closed too; a complete body refused for its JSON: kept.
    const bad = await both({
      keepAlive: true,
      path: '/anthropic/v1/messages',
      headers: json,
      body: '{"model":',
    });
    assert.deepEqual(comparable(bad.viaLane), comparable(bad.viaRouter));
  });

  it("answers a body that stops arriving with the guard's 408 and goes on serving", async () => {
    const slow = await startBridge(mock.url, { AIBRIDGE_REQUEST_BODY_TIMEOUT_MS: '300' });
    try {
      const { key } = await slow.addUser('slow@lane.test');
      const before = slow.bridge.lane.taken;
      const answer = await send(slow.url, {
        path: '/anthropic/v1/messages',
        headers: { ...json, 'x-api-key': key, 'content-length': '500' },
        body: '{"model":',
        unfinished: true,
      });
      assert.equal(slow.bridge.lane.taken - before, 1);
      assert.equal(answer.status, 408);
      const ok = await send(slow.url, {
        path: '/anthropic/v1/messages',
        headers: { ...json, 'x-api-key': key },
        body: MESSAGE,
      });
      assert.equal(ok.status, 200);
    } finally {
      await slow.close();
    }
  });

  it('writes the same request log line for a refusal as fastify does', async () => {
    const mark = { lane: lane.logs.length, routed: routed.logs.length };
    await both(refusals[0]![1]);
    const line = (logs: string[], from: number): Record<string, unknown> => {
      const found = logs
        .slice(from)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === 'request');
      assert.ok(found, 'a request line');
      const { time: _t, pid: _p, hostname: _h, reqId, durationMs, ...rest } = found;
      assert.match(String(reqId), /^req-[0-9a-z]+$/);
      assert.equal(typeof durationMs, 'number');
      return rest;
    };
    assert.deepEqual(line(lane.logs, mark.lane), line(routed.logs, mark.routed));
  });

  it('leaves to fastify what is not a metered JSON POST, which answers as before', async () => {
    const cases: Sent[] = [
      { path: '/anthropic/v1/messages', headers: { ...json, 'content-type': 'text/plain' }, body: MESSAGE },
      { path: '/anthropic/v1/messages/count_tokens', headers: json, body: MESSAGE },
      { path: '/anthropic/v1/%6dessages', headers: json, body: MESSAGE },
      { path: '/anthropic/v1/../v1/messages', headers: json, body: MESSAGE },
      { path: '/anthropic/v1/files', headers: json, body: MESSAGE },
      { method: 'GET', path: '/anthropic/v1/messages', headers: json },
      { path: '/Anthropic/v1/messages', headers: json, body: MESSAGE },
    ];
    for (const s of cases) {
      const { viaLane, viaRouter, taken } = await both(s);
      assert.equal(taken, 0, `${s.method ?? 'POST'} ${s.path} ${s.headers?.['content-type']}`);
      assert.equal(viaLane.status, viaRouter.status, s.path);
    }
  });

  it('takes the spellings of a metered path that mean it (parameters, duplicate slashes, a query)', async () => {
    for (const path of [
      '/anthropic/v1//messages',
      '/anthropic/v1/messages;x=1',
      '/anthropic/v1/messages?beta=true',
    ]) {
      const { viaLane, viaRouter, taken } = await both({ path, headers: json, body: MESSAGE });
      assert.equal(taken, 1, path);
      assert.equal(viaLane.status, 200, path);
      assert.deepEqual(comparable(viaLane), comparable(viaRouter), path);
    }
  });

  it('keeps serving after a client hangs up halfway through its body, and records nothing for it', async () => {
    const before = (await lane.interceptions(0)).length;
    await new Promise<void>((resolve) => {
      const req = http.request(`${lane.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: { ...json, 'x-api-key': keys.lane, 'content-length': '2000' },
        agent: false,
      });
      req.on('error', () => resolve());
      req.write('{"model":"claude-sonnet-4-5","messages":[');
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 100);
    });
    const ok = await send(lane.url, {
      path: '/anthropic/v1/messages',
      headers: { ...json, 'x-api-key': keys.lane },
      body: MESSAGE,
    });
    assert.equal(ok.status, 200);
    const after = await lane.interceptions(before + 1);
    assert.equal(after.length, before + 1, 'only the completed call is recorded');
  });

  it("takes Gemini's calls with the key in the query, cut from the URL before it goes upstream", async () => {
    const body = JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'Say hello in French' }] }] });
    const headers = { 'content-type': 'application/json' };
    for (const path of [
      '/gemini/v1beta/models/gemini-2.5-pro:generateContent?key=KEY',
      '/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse&key=KEY',
    ]) {
      const seen = gemini.seen.length;
      const { viaLane, viaRouter, taken } = await both({ path: path.replace('KEY', '{KEY}'), headers, body });
      assert.equal(taken, 1, path);
      assert.equal(viaLane.status, 200, `${path}: ${viaLane.body}`);
      assert.deepEqual(comparable(viaLane), comparable(viaRouter), path);
      const [up1, up2] = gemini.seen.slice(seen);
      assert.ok(up1 && up2);
      assert.equal(up1.url, up2.url, 'the same URL upstream either way');
      assert.doesNotMatch(up1.url, /key=/);
      assert.equal(up1.headers['x-goog-api-key'], GEMINI_UPSTREAM_KEY);
    }
  });

  it('gives fastify and the lane one sequence of request ids', async () => {
    const mark = lane.logs.length;
    // A refusal through each way in: the lane's (a metered path) and fastify's (a refused path).
    await send(lane.url, refusals[0]![1]);
    await send(lane.url, { ...refusals[0]![1], path: '/anthropic/v1/nothing-here' });
    await send(lane.url, refusals[0]![1]);
    const ids = lane.logs
      .slice(mark)
      .map((l) => JSON.parse(l) as { msg?: string; reqId?: string })
      .filter((l) => l.msg === 'request')
      .map((l) => Number.parseInt(String(l.reqId).slice(4), 36));
    assert.equal(ids.length, 3);
    assert.ok(ids[0]! < ids[1]! && ids[1]! < ids[2]!, `one increasing sequence: ${ids}`);
  });
});
