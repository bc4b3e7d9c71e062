import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { AnthropicMock, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';

const MSG = { model: 'claude-sonnet-4-6', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] };

/** A port that nothing listens on: bound, then released. */
async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('the Anthropic pass-through', () => {
  let mock: AnthropicMock;
  let tb: TestBridge;
  let key: string;

  before(async () => {
    mock = await new AnthropicMock().start();
    tb = await startBridge(mock.url);
    key = (await tb.addUser('proxy@example.com')).key;
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  it('passes query strings and anthropic-* headers unchanged, and strips hop-by-hop and client credentials', async () => {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request(`${tb.url}/anthropic/v1/messages?beta=true&x=a%2Fb`, {
        method: 'POST',
        headers: {
          'x-api-key': key,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
          'anthropic-beta': 'claude-code-20250219,interleaved-thinking-2025-05-14',
          connection: 'keep-alive, x-secret-hop',
          'x-secret-hop': 'must-not-pass',
          'keep-alive': 'timeout=5',
          cookie: 'session=abc',
          'proxy-authorization': 'Basic Zm9vOmJhcg==',
          // A client choosing the account billed, or a field mask that could hide usage.
          'openai-organization': 'org-elsewhere',
          'openai-project': 'proj_elsewhere',
          'x-goog-user-project': 'someone-elses',
          'x-goog-fieldmask': 'content',
          // Provider system parameters and other credentials: a member's deadline would be a 504
          // counted against the target for everyone, a subscription key's 401 a pool key put out of use.
          'x-server-timeout': '0.001',
          'x-http-method-override': 'GET',
          'x-goog-request-params': 'project=someone-elses',
          'x-goog-iam-authorization-token': 'ya29.x',
          'x-vertex-ai-llm-request-type': 'dedicated',
          'ocp-apim-subscription-key': 'wrong',
          'x-amz-security-token': 'x',
          'x-amzn-bedrock-performanceconfig-latency': 'optimized',
          'azureml-model-deployment': 'other',
          'x-ms-model-mesh-model-name': 'other',
          // What proxies say, and the path rewrites some servers honour (an allow-list undone).
          forwarded: 'for=10.0.0.1;host=internal',
          'x-forwarded-for': '10.0.0.1',
          'x-forwarded-host': 'internal.example',
          'x-real-ip': '10.0.0.1',
          'x-original-url': '/v1/files',
          'x-rewrite-url': '/v1/files',
          // What SDKs send for themselves goes through.
          'x-goog-api-client': 'google-genai-sdk/1.0.0 gl-node/20',
          'x-stainless-lang': 'js',
        },
      });
      req.on('response', resolve);
      req.on('error', reject);
      req.end(JSON.stringify(MSG));
    });
    res.resume();
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['x-aibridge-interception-id']), /^int_/);
    const seen = mock.messageRequests().at(-1)!;
    assert.equal(seen.url, '/v1/messages?beta=true&x=a%2Fb');
    assert.equal(seen.headers['anthropic-version'], '2023-06-01');
    assert.equal(seen.headers['anthropic-beta'], 'claude-code-20250219,interleaved-thinking-2025-05-14');
    assert.equal(seen.headers['x-api-key'], UPSTREAM_KEY);
    for (const h of [
      'x-secret-hop',
      'keep-alive',
      'cookie',
      'proxy-authorization',
      'authorization',
      'openai-organization',
      'openai-project',
      'x-goog-user-project',
      'x-goog-fieldmask',
      'x-server-timeout',
      'x-http-method-override',
      'x-goog-request-params',
      'x-goog-iam-authorization-token',
      'x-vertex-ai-llm-request-type',
      'ocp-apim-subscription-key',
      'x-amz-security-token',
      'x-amzn-bedrock-performanceconfig-latency',
      'azureml-model-deployment',
      'x-ms-model-mesh-model-name',
      'forwarded',
      'x-forwarded-for',
      'x-forwarded-host',
      'x-real-ip',
      'x-original-url',
      'x-rewrite-url',
    ]) {
      assert.equal(seen.headers[h], undefined, `${h} must not be forwarded`);
    }
    assert.equal(seen.headers['x-goog-api-client'], 'google-genai-sdk/1.0.0 gl-node/20');
    assert.equal(seen.headers['x-stainless-lang'], 'js');
    assert.equal(seen.body, JSON.stringify(MSG), 'the body goes upstream byte for byte');
  });

  it('serves a client that sends `Expect: 100-continue` (curl on large bodies, .NET, Java) without forwarding it, on the lane and on fastify’s route, and no breaker opens', async () => {
    /** As curl does: the head first, the body only once the bridge says 100 Continue. */
    const send = (path: string, headers: Record<string, string>, body: string) =>
      new Promise<{ status: number; continued: boolean; text: string }>((resolve, reject) => {
        let continued = false;
        const req = http.request(`${tb.url}${path}`, {
          method: 'POST',
          headers: { ...headers, expect: '100-continue', 'content-length': String(Buffer.byteLength(body)) },
        });
        req.on('continue', () => {
          continued = true;
          req.end(body);
        });
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, continued, text }));
        });
        req.on('error', reject);
        req.flushHeaders();
      });
    const before = mock.messageRequests().length;
    // More than the breaker's threshold (5): each was a 502 counted against the model before.
    for (let i = 0; i < 7; i++) {
      const r = await send(
        '/anthropic/v1/messages',
        { 'x-api-key': key, 'content-type': 'application/json' },
        JSON.stringify(MSG),
      );
      assert.equal(r.status, 200, r.text);
      assert.ok(r.continued, 'the bridge answered 100 Continue');
    }
    // A content type the lane leaves to fastify's route (and its own body parser).
    const viaRoute = await send(
      '/anthropic/v1/messages',
      { 'x-api-key': key, 'content-type': 'text/plain' },
      JSON.stringify(MSG),
    );
    assert.equal(viaRoute.status, 200, viaRoute.text);
    const seen = mock.messageRequests().slice(before);
    assert.equal(seen.length, 8);
    for (const s of seen) assert.equal(s.headers.expect, undefined, 'expect is not forwarded');
    const plain = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify(MSG),
    });
    assert.equal(plain.status, 200, 'the model’s breaker is closed');
  });

  it('passes the allow-listed free endpoints through, HEAD included, and answers the agents’ unauthenticated HEAD probe locally', async () => {
    const before = mock.requests.length;
    const probe = await fetch(`${tb.url}/anthropic`, { method: 'HEAD' });
    assert.equal(probe.status, 200);
    assert.equal(mock.requests.length, before, 'the probe is answered by the bridge');

    // The model list is the bridge's own answer (docs/routing.md#model-discovery), HEAD included.
    const head = await fetch(`${tb.url}/anthropic/v1/models`, {
      method: 'HEAD',
      headers: { 'x-api-key': key },
    });
    assert.equal(head.status, 200);
    const one = await fetch(`${tb.url}/anthropic/v1/models/claude-sonnet-4-6?limit=1`, {
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(((await one.json()) as { id: string }).id, 'claude-sonnet-4-6');
    assert.equal(mock.requests.length, before, 'the model list is not asked upstream');

    const count = await fetch(`${tb.url}/anthropic/v1/messages/count_tokens?beta=true`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-sonnet-4-6', messages: [] }),
    });
    assert.deepEqual(await count.json(), { input_tokens: 42 });
    const seen = mock.requests.at(-1)!;
    assert.equal(seen.url, '/v1/messages/count_tokens?beta=true');

    const unauth = await fetch(`${tb.url}/anthropic/v1/models`);
    assert.equal(unauth.status, 401);
  });

  it('serves a request whose target is in absolute form (a client taking the bridge for a forward proxy), as RFC 9112 asks', async () => {
    const { port } = new URL(tb.url);
    const body = JSON.stringify(MSG);
    const before = mock.messageRequests().length;
    for (const target of [
      `http://127.0.0.1:${port}/anthropic/v1/messages?beta=true`,
      `HTTP://user@127.0.0.1:${port}/anthropic/v1/messages`,
    ]) {
      const answer = await new Promise<string>((resolve, reject) => {
        const s = net.connect(Number(port), '127.0.0.1');
        let out = '';
        s.setEncoding('utf8');
        s.on('data', (d: string) => {
          out += d;
        });
        s.on('close', () => resolve(out));
        s.on('error', reject);
        s.write(
          `POST ${target} HTTP/1.1\r\nHost: elsewhere.example\r\nx-api-key: ${key}\r\ncontent-type: application/json\r\n` +
            `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        );
      });
      assert.match(answer, /^HTTP\/1\.1 200 /, answer.slice(0, 300));
    }
    const seen = mock.messageRequests().slice(before);
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/v1/messages?beta=true', '/v1/messages'],
    );
  });

  it('refuses a token count whose body names a key twice, nests too deep or is no JSON object, before it goes upstream', async () => {
    const before = mock.requests.length;
    for (const body of [
      '{"model":"claude-sonnet-4-6","messages":[],"model":"claude-opus-4-1"}',
      `{"model":"claude-sonnet-4-6","messages":${'['.repeat(200)}${']'.repeat(200)}}`,
      'model=claude-sonnet-4-6',
    ]) {
      const res = await fetch(`${tb.url}/anthropic/v1/messages/count_tokens`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/json' },
        body,
      });
      assert.equal(res.status, 400, body.slice(0, 60));
      const err = (await res.json()) as { type: string; error: { type: string } };
      assert.equal(err.type, 'error');
      assert.equal(err.error.type, 'invalid_request_error');
      assert.equal(res.headers.get('x-aibridge-error-code'), 'invalid_json');
    }
    assert.equal(mock.requests.length, before, 'nothing went upstream');
  });

  it('refuses paths that try to climb out of the provider prefix, without contacting upstream', async () => {
    const before = mock.requests.length;
    // Raw paths: fetch would normalise dot segments itself before they reach the bridge.
    for (const p of [
      '/anthropic/../api/v1/users',
      '/anthropic/v1/%2e%2e/%2e%2e/api/v1/users',
      '/anthropic/v1/..%2Fadmin',
      '/anthropic/v1/a%00b',
    ]) {
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const { port } = new URL(tb.url);
        const req = http.request(
          { host: '127.0.0.1', port, path: p, headers: { 'x-api-key': key } },
          (res) => {
            let b = '';
            res.on('data', (c) => {
              b += c;
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
          },
        );
        req.on('error', reject);
        req.end();
      });
      assert.equal(status, 400, p);
      assert.equal((JSON.parse(body) as { error: { type: string } }).error.type, 'invalid_request_error', p);
    }
    assert.equal(mock.requests.length, before);
  });

  it('answers non-JSON and oversized bodies in Anthropic shape without contacting upstream', async () => {
    const before = mock.requests.length;
    const bad = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: '{"model": "claude',
    });
    assert.equal(bad.status, 400);
    assert.deepEqual(((await bad.json()) as { type: string }).type, 'error');
    const arr = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: '[1,2]',
    });
    assert.equal(arr.status, 400);
    assert.equal(mock.requests.length, before);
  });

  it('streams each event as it arrives, never waiting for the whole response', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    mock.next({ kind: 'gated', gate });
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ ...MSG, stream: true }),
    });
    assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    // The upstream is holding the rest back: the first delta must reach us anyway.
    while (!text.includes('first ')) {
      const { value, done } = await reader.read();
      assert.ok(!done, 'stream ended before the gate opened');
      text += decoder.decode(value, { stream: true });
    }
    assert.ok(!text.includes('second'));
    release();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    assert.ok(text.includes('second'));
    assert.ok(text.trimEnd().endsWith('data: {"type":"message_stop"}'));
  });

  it('aborts the upstream request when the client disconnects mid-stream, and records client_aborted', async () => {
    mock.next({ kind: 'drip', count: 200, delayMs: 20 });
    const n = (await tb.interceptions(0, key)).length;
    const ac = new AbortController();
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ ...MSG, stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    ac.abort();
    const rec = (await tb.interceptions(n + 1, key))[0]!;
    assert.equal(rec.status, 'client_aborted');
    assert.equal(rec.streamed, true);
    assert.equal(rec.usage.input, 25, 'usage seen so far is kept');
    await eventually(() => mock.messageRequests().at(-1)!.aborted, {
      timeoutMs: 2000,
      what: 'the upstream request to be aborted',
    });
  });

  it('aborts the upstream request when the client leaves before the provider answers at all', async () => {
    mock.next({ kind: 'hang' });
    const n = (await tb.interceptions(0, key)).length;
    const ac = new AbortController();
    const sent = fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify(MSG),
      signal: ac.signal,
    }).catch((err: Error) => err);
    await eventually(() => mock.messageRequests().length > 0 && !mock.messageRequests().at(-1)!.aborted, {
      timeoutMs: 2000,
      what: 'the request to reach the provider',
    });
    ac.abort();
    assert.equal(((await sent) as Error).name, 'AbortError');
    await eventually(() => mock.messageRequests().at(-1)!.aborted, {
      timeoutMs: 2000,
      what: 'the upstream request to be aborted',
    });
    const rec = (await tb.interceptions(n + 1, key))[0]!;
    assert.equal(rec.status, 'client_aborted');
  });

  it('ends a stream cut by the upstream with an Anthropic error event and records it', async () => {
    mock.next({ kind: 'reset' });
    const n = (await tb.interceptions(0, key)).length;
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ ...MSG, stream: true }),
    });
    const text = await res.text();
    assert.ok(text.includes('event: message_start'));
    assert.match(
      text,
      /event: error\ndata: \{"type":"error","error":\{"type":"api_error","message":"The provider's connection broke while it answered/,
    );
    const rec = (await tb.interceptions(n + 1, key))[0]!;
    assert.equal(rec.status, 'error');
    assert.equal(rec.error?.type, 'upstream_unreachable');
  });
});

describe('when the upstream is unreachable or slow', () => {
  it('answers 502 in Anthropic shape when the connection is refused, and records it', async () => {
    const mock = await new AnthropicMock().start();
    const tb = await startBridge(`http://127.0.0.1:${await deadPort()}`);
    try {
      const dev = await tb.addUser('refused@example.com');
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': dev.key, 'content-type': 'application/json' },
        body: JSON.stringify(MSG),
      });
      assert.equal(res.status, 502);
      const body = (await res.json()) as { type: string; error: { type: string; message: string } };
      assert.equal(body.type, 'error');
      assert.equal(body.error.type, 'api_error');
      assert.match(body.error.message, /could not be reached/);
      const rec = (await tb.interceptions(1, dev.key))[0]!;
      assert.equal(rec.status, 'error');
      assert.equal(rec.httpStatus, 502);
      assert.equal(rec.error?.type, 'upstream_unreachable');
    } finally {
      await tb.close();
      await mock.stop();
    }
  });

  it('answers 504 when the upstream does not send headers in time', async () => {
    const mock = await new AnthropicMock().start();
    const tb = await startBridge(mock.url, { AIBRIDGE_HEADERS_TIMEOUT_MS: '300' });
    try {
      const dev = await tb.addUser('slow@example.com');
      mock.next({ kind: 'hang' });
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': dev.key, 'content-type': 'application/json' },
        body: JSON.stringify(MSG),
      });
      assert.equal(res.status, 504);
      const body = (await res.json()) as { error: { type: string } };
      assert.equal(body.error.type, 'api_error');
      const rec = (await tb.interceptions(1, dev.key))[0]!;
      assert.equal(rec.error?.type, 'upstream_timeout');
      // and the bridge still serves
      const ok = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': dev.key, 'content-type': 'application/json' },
        body: JSON.stringify(MSG),
      });
      assert.equal(ok.status, 200);
    } finally {
      await tb.close();
      await mock.stop();
    }
  });

  it('answers 503 when no upstream key is configured', async () => {
    const mock = await new AnthropicMock().start();
    const tb = await startBridge(mock.url, { AIBRIDGE_ANTHROPIC_API_KEY: '' });
    try {
      const dev = await tb.addUser('nokey@example.com');
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': dev.key, 'content-type': 'application/json' },
        body: JSON.stringify(MSG),
      });
      assert.equal(res.status, 503);
      assert.equal(mock.requests.length, 0);
    } finally {
      await tb.close();
      await mock.stop();
    }
  });
});
