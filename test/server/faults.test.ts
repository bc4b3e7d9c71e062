import assert from 'node:assert/strict';
import net from 'node:net';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { OpenAIMock } from '../helpers/openai-mock';

interface ApiCase {
  name: string;
  path: string;
  body(stream: boolean, model?: string): unknown;
  /** Checks a bridge error body is in this API's shape; returns its error code/type. */
  shape(json: unknown): string;
  /** Matches this API's in-stream error event. */
  streamError: RegExp;
  queue(mocks: Mocks, s: FaultScenario): void;
}

type FaultScenario =
  | { kind: 'hang' }
  | { kind: 'drip'; count: number; delayMs: number }
  | { kind: 'overloaded' }
  | { kind: 'mid-stream-error' };

interface Mocks {
  anthropic: AnthropicMock;
  openai: OpenAIMock;
}

const anthropicShape = (json: unknown): string => {
  const b = json as { type: string; error: { type: string; message: string } };
  assert.equal(b.type, 'error');
  assert.equal(typeof b.error.message, 'string');
  return b.error.type;
};
const openaiShape = (json: unknown): string => {
  const b = json as { error: { type: string; code: string; message: string; param: null } };
  assert.equal(typeof b.error.message, 'string');
  assert.equal(b.error.param, null);
  return b.error.code ?? b.error.type;
};

const CASES: ApiCase[] = [
  {
    name: 'Anthropic Messages',
    path: '/anthropic/v1/messages',
    body: (stream, model = 'claude-sonnet-4-6') => ({
      model,
      max_tokens: 5,
      stream,
      messages: [{ role: 'user', content: 'x' }],
    }),
    shape: anthropicShape,
    streamError: /event: error\ndata: \{"type":"error","error":\{"type":"api_error"/,
    queue: (m, s) =>
      m.anthropic.next(
        s.kind === 'overloaded'
          ? { kind: 'error', status: 529, type: 'overloaded_error', message: 'Overloaded' }
          : s,
      ),
  },
  {
    name: 'OpenAI Chat Completions',
    path: '/openai/v1/chat/completions',
    body: (stream, model = 'gpt-5') => ({ model, stream, messages: [{ role: 'user', content: 'x' }] }),
    shape: openaiShape,
    streamError:
      /data: \{"error":\{"message":"[^"]+","type":"server_error","param":null,"code":"upstream_timeout"\}\}/,
    queue: (m, s) =>
      m.openai.next(
        s.kind === 'overloaded'
          ? { kind: 'error', status: 503, type: 'server_error', code: null, message: 'Slow down' }
          : s,
      ),
  },
  {
    name: 'OpenAI Responses',
    path: '/openai/v1/responses',
    body: (stream, model = 'gpt-5') => ({ model, stream, input: 'x' }),
    shape: openaiShape,
    streamError: /event: error\ndata: \{"type":"error","code":"upstream_timeout"/,
    queue: (m, s) =>
      m.openai.next(
        s.kind === 'overloaded'
          ? { kind: 'error', status: 503, type: 'server_error', code: null, message: 'Slow down' }
          : s,
      ),
  },
];

async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('when the upstream misbehaves', function () {
  this.timeout(30_000);
  let mocks: Mocks;
  let tb: TestBridge;
  let key: string;
  /** The breakers' cooldown runs on this clock; the upstream timeouts stay real (they are undici timers). */
  const clock = new TestClock();

  before(async () => {
    mocks = { anthropic: await new AnthropicMock().start(), openai: await new OpenAIMock().start() };
    tb = await startBridge(
      mocks.anthropic.url,
      {
        AIBRIDGE_OPENAI_BASE_URL: mocks.openai.url,
        AIBRIDGE_HEADERS_TIMEOUT_MS: '300',
        AIBRIDGE_IDLE_TIMEOUT_MS: '250',
        AIBRIDGE_BREAKER_THRESHOLD: '3',
        AIBRIDGE_BREAKER_COOLDOWN_MS: '30000',
      },
      undefined,
      { clock },
    );
    key = (await tb.addUser('faults@example.com')).key;
  });
  after(async () => {
    await tb.close();
    await mocks.anthropic.stop();
    await mocks.openai.stop();
  });

  function post(c: ApiCase, stream: boolean, model?: string): Promise<Response> {
    return fetch(tb.url + c.path, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(c.body(stream, model)),
    });
  }

  async function stillServes(c: ApiCase): Promise<void> {
    const res = await post(c, true, 'healthy-model');
    assert.equal(res.status, 200);
    await res.text();
  }

  for (const c of CASES) {
    describe(c.name, () => {
      it('a hanging upstream gets 504 in the API shape, recorded as upstream_timeout', async () => {
        c.queue(mocks, { kind: 'hang' });
        const n = (await tb.interceptions(0, key)).length;
        const res = await post(c, false, 'hang-model');
        assert.equal(res.status, 504);
        c.shape(await res.json());
        const rec = (await tb.interceptions(n + 1, key))[0]!;
        assert.equal(rec.error?.type, 'upstream_timeout');
        assert.equal(rec.httpStatus, 504);
        await stillServes(c);
      });

      it('a stream that stalls past the idle timeout ends with an error event in the API format', async () => {
        c.queue(mocks, { kind: 'drip', count: 3, delayMs: 600 });
        const n = (await tb.interceptions(0, key)).length;
        const res = await post(c, true, 'drip-model');
        assert.equal(res.status, 200);
        const text = await res.text();
        assert.match(text, c.streamError);
        const rec = (await tb.interceptions(n + 1, key))[0]!;
        assert.equal(rec.status, 'error');
        assert.equal(rec.error?.type, 'upstream_timeout');
        await stillServes(c);
      });

      it('a slow drip inside the idle timeout arrives whole', async () => {
        c.queue(mocks, { kind: 'drip', count: 5, delayMs: 60 });
        const res = await post(c, true, 'slow-model');
        const text = await res.text();
        assert.ok(text.includes('4 '), text.slice(-300));
        assert.doesNotMatch(text, /upstream_timeout/);
      });

      it('a mid-stream provider error reaches the client and the record', async () => {
        c.queue(mocks, { kind: 'mid-stream-error' });
        const n = (await tb.interceptions(0, key)).length;
        const res = await post(c, true, 'mid-model');
        const text = await res.text();
        assert.match(text, /error/);
        const rec = (await tb.interceptions(n + 1, key))[0]!;
        assert.equal(rec.status, 'error');
        await stillServes(c);
      });

      it('repeated overload opens the breaker for that model only; a probe after the cooldown closes it', async () => {
        const model = `flaky-${c.name.replaceAll(' ', '-')}`;
        for (let i = 0; i < 3; i++) {
          c.queue(mocks, { kind: 'overloaded' });
          const res = await post(c, false, model);
          assert.ok(res.status === 529 || res.status === 503);
          await res.arrayBuffer();
        }
        const upstreamBefore = mocks.anthropic.requests.length + mocks.openai.requests.length;
        const refused = await post(c, false, model);
        assert.equal(refused.status, 503);
        assert.equal(
          c.shape(await refused.json()),
          c.name.startsWith('OpenAI') ? 'circuit_open' : 'api_error',
        );
        const retryAfter = Number(refused.headers.get('retry-after'));
        assert.equal(retryAfter, 30, 'retry-after is the cooldown left, in seconds');
        assert.equal(
          mocks.anthropic.requests.length + mocks.openai.requests.length,
          upstreamBefore,
          'an open breaker does not call upstream',
        );
        const health = (await (
          await fetch(`${tb.url}/healthz`, { headers: { authorization: `Bearer ${tb.adminKey}` } })
        ).json()) as {
          breakers: { model: string; state: string }[];
        };
        assert.equal(health.breakers.find((b) => b.model === model)?.state, 'open');

        await stillServes(c); // another model is unaffected
        clock.advance(29_999);
        const early = await post(c, false, model);
        assert.equal(early.status, 503, 'still open a millisecond before the cooldown ends');
        await early.arrayBuffer();
        clock.advance(1);
        const probe = await post(c, false, model);
        assert.equal(probe.status, 200);
        await probe.arrayBuffer();
        const after = (await (
          await fetch(`${tb.url}/healthz`, { headers: { authorization: `Bearer ${tb.adminKey}` } })
        ).json()) as { breakers: { model: string }[] };
        assert.equal(
          after.breakers.find((b) => b.model === model),
          undefined,
          'closed again',
        );
      });
    });
  }

  it('a refused connection gets 502 in each API shape', async () => {
    const dead = `http://127.0.0.1:${await deadPort()}`;
    const down = await startBridge(dead, { AIBRIDGE_OPENAI_BASE_URL: `${dead}/v1` });
    try {
      const k = (await down.addUser('down@example.com')).key;
      for (const c of CASES) {
        const res = await fetch(down.url + c.path, {
          method: 'POST',
          headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
          body: JSON.stringify(c.body(true)),
        });
        assert.equal(res.status, 502, c.name);
        c.shape(await res.json());
      }
    } finally {
      await down.close();
    }
  });

  it('a body over the limit gets 413 in the API shape without contacting upstream', async () => {
    const small = await startBridge(mocks.anthropic.url, {
      AIBRIDGE_OPENAI_BASE_URL: mocks.openai.url,
      AIBRIDGE_BODY_LIMIT: '2048',
    });
    try {
      const k = (await small.addUser('big@example.com')).key;
      const before = mocks.anthropic.requests.length + mocks.openai.requests.length;
      for (const c of CASES) {
        const res = await fetch(small.url + c.path, {
          method: 'POST',
          headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
          body: JSON.stringify({ ...(c.body(false) as object), padding: 'x'.repeat(4096) }),
        });
        assert.equal(res.status, 413, c.name);
        c.shape(await res.json());
      }
      assert.equal(mocks.anthropic.requests.length + mocks.openai.requests.length, before);
    } finally {
      await small.close();
    }
  });

  it("the bridge's own API takes at most 1 MiB and public sign-in 4 KiB; provider routes keep AIBRIDGE_BODY_LIMIT", async () => {
    const post = (path: string, body: string, auth?: string): Promise<Response> =>
      fetch(tb.url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${auth}` } : {}) },
        body,
      });
    // Anyone can reach sign-in, and a JSON body costs many times its size once parsed.
    const signIn = await post('/api/v1/session', JSON.stringify({ key: 'aib_x', pad: 'x'.repeat(8192) }));
    assert.equal(signIn.status, 413);
    assert.equal(((await signIn.json()) as { error: { code: string } }).error.code, 'body_too_large');
    const user = await post(
      '/api/v1/users',
      JSON.stringify({ email: 'pad@example.com', pad: 'x'.repeat(1024 * 1024) }),
      tb.adminKey,
    );
    assert.equal(user.status, 413);
    assert.equal(((await user.json()) as { error: { code: string } }).error.code, 'body_too_large');
    // A large agent turn (2 MiB here, 32 MiB by default) still goes through.
    const before = mocks.anthropic.requests.length;
    const turn = await post(
      '/anthropic/v1/messages',
      JSON.stringify({
        ...(CASES[0]!.body(false) as object),
        metadata: { pad: 'x'.repeat(2 * 1024 * 1024) },
      }),
      key,
    );
    assert.equal(turn.status, 200, await turn.clone().text());
    await turn.arrayBuffer();
    assert.equal(mocks.anthropic.requests.length, before + 1);
  });
});
