import assert from 'node:assert/strict';
import http from 'node:http';
import fc from 'fast-check';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { OpenAIMock } from '../helpers/openai-mock';

interface Answer {
  status: number;
  body: string;
}

/** A raw HTTP request (fetch would refuse or normalise the hostile parts). */
function raw(
  url: string,
  opts: { method: string; path: string; headers?: Record<string, string>; body?: Buffer | string },
): Promise<Answer> {
  const u = new URL(url);
  // Node frames bodies of DELETE/OPTIONS only with an explicit length.
  const headers = { ...opts.headers };
  if (opts.body !== undefined) headers['content-length'] = String(Buffer.byteLength(opts.body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, method: opts.method, path: opts.path, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

const RUNS = Number(process.env.FUZZ_RUNS ?? 1000);

/** JSON values of every shape, plus the ones parsers trip on: deep nesting, huge strings, NULs, lone surrogates. */
const hostileJson = fc.oneof(
  fc.json({ depthSize: 'medium' }),
  fc.jsonValue().map((v) => JSON.stringify({ model: v, messages: v, max_tokens: v, stream: v, input: v })),
  fc.integer({ min: 1, max: 5000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`),
  fc.integer({ min: 1, max: 3000 }).map((n) => `{"messages":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}`),
  fc
    .string({ unit: 'binary', maxLength: 300 })
    .map((s) => JSON.stringify({ model: s, messages: [{ role: 'user', content: s }] })),
  fc.constantFrom(
    '',
    'null',
    '[]',
    '"x"',
    '{',
    '{"model":',
    '\u0000{}',
    '{"model":"\ud800"}',
    '{"stream":true',
  ),
);

const hostileBytes = fc.oneof(
  hostileJson.map((s) => Buffer.from(s)),
  fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b)),
  fc.constant(Buffer.from([0xff, 0xfe, 0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d])),
);

const contentType = fc.constantFrom(
  'application/json',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=latin1',
  '',
);

const segment = fc.oneof(
  fc.constantFrom(
    '..',
    '.',
    '%2e%2e',
    '%2f',
    '%2F..',
    '%00',
    '%',
    '%zz',
    'v1',
    'messages',
    'api',
    'users',
    '%5c',
    '..%2f',
  ),
  fc.webSegment(),
);

describe('hostile and malformed input', function () {
  this.timeout(180_000);
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;
  let key = '';
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => {
    unhandled.push(e);
  };
  const upstreamCount = (): number => anthropic.requests.length + openai.requests.length;

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    tb = await startBridge(anthropic.url, {
      AIBRIDGE_OPENAI_BASE_URL: openai.url,
      AIBRIDGE_BODY_LIMIT: '65536',
      AIBRIDGE_LOG_LEVEL: 'silent',
      // Fuzzed bodies may name models with nonsense costs; nothing here tests budgets.
      AIBRIDGE_BURST_RPM: '0',
    });
    key = (await tb.addUser('fuzz@example.com', { role: 'admin' })).key;
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  afterEach(async () => {
    assert.deepEqual(unhandled, [], 'no unhandled rejections');
    const health = await raw(tb.url, { method: 'GET', path: '/healthz' });
    assert.equal(health.status, 200, 'the bridge still serves');
  });

  it('model routes answer 4xx in the API shape and never contact upstream for bad bodies', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/anthropic/v1/messages', '/openai/v1/chat/completions', '/openai/v1/responses'),
        hostileBytes,
        contentType,
        async (route, body, type) => {
          const before = upstreamCount();
          const headers: Record<string, string> = { 'x-api-key': key, authorization: `Bearer ${key}` };
          if (type) headers['content-type'] = type;
          const res = await raw(tb.url, { method: 'POST', path: route, headers, body });
          assert.ok(res.status < 500, `${route} answered ${res.status}: ${res.body.slice(0, 200)}`);
          if (res.status >= 400) {
            assert.equal(upstreamCount(), before, 'a refused body reached upstream');
            const parsed = JSON.parse(res.body) as Record<string, unknown>;
            if (route.startsWith('/anthropic')) assert.equal(parsed.type, 'error');
            else assert.ok(typeof parsed.error === 'object');
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('JSON nested past AIBRIDGE_MAX_JSON_DEPTH (128) is refused with 400 in the API shape; up to it, never for its depth', async () => {
    const opener = fc.constantFrom('[', '{"a":');
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/anthropic/v1/messages', '/openai/v1/chat/completions', '/openai/v1/responses'),
        fc.boolean(),
        fc.oneof(fc.integer({ min: 120, max: 136 }), fc.integer({ min: 1, max: 8000 })),
        fc.array(opener, { minLength: 1, maxLength: 16 }),
        async (route, stream, levels, pattern) => {
          const openers = Array.from({ length: levels }, (_, i) => pattern[i % pattern.length]!);
          const closers = openers.map((o) => (o === '[' ? ']' : '}')).reverse();
          const deep = `${openers.join('')}1${closers.join('')}`;
          const depth = openers.length + 1;
          const body = `{"model":"gpt-5","max_tokens":5,"stream":${stream},"input":"hi","messages":[{"role":"user","content":"hi"}],"metadata":${deep}}`;
          const before = upstreamCount();
          const res = await raw(tb.url, {
            method: 'POST',
            path: route,
            headers: { 'x-api-key': key, authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body,
          });
          assert.ok(res.status < 500, `${route} answered ${res.status}: ${res.body.slice(0, 200)}`);
          const refusedForDepth = res.status === 400 && res.body.includes('deeper than 128 levels');
          assert.equal(
            refusedForDepth,
            depth > 128,
            `depth ${depth}: ${res.status} ${res.body.slice(0, 200)}`,
          );
          if (depth > 128) {
            assert.equal(upstreamCount(), before, 'a too-deep body reached upstream');
            const parsed = JSON.parse(res.body) as Record<string, unknown>;
            if (route.startsWith('/anthropic')) assert.equal(parsed.type, 'error');
            else assert.equal((parsed.error as { code?: string }).code, 'invalid_json');
          }
        },
      ),
      { numRuns: Math.min(RUNS, 200) },
    );
  });

  it('paths cannot climb out of a provider prefix or reach the admin API', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/anthropic', '/openai/v1', '/api/v1', ''),
        fc.array(segment, { minLength: 1, maxLength: 6 }),
        fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS', 'PROPFIND', 'HEAD'),
        async (prefix, segs, method) => {
          const path = `${prefix}/${segs.join('/')}`;
          const before = upstreamCount();
          const res = await raw(tb.url, {
            method,
            path,
            headers: { 'x-api-key': 'aib_wrong', 'content-type': 'application/json' },
            body: method === 'GET' || method === 'HEAD' ? undefined : '{}',
          });
          assert.ok(res.status < 500, `${method} ${path} answered ${res.status}: ${res.body.slice(0, 200)}`);
          assert.notEqual(res.status, 200, `${method} ${path} got through without a valid key`);
          assert.equal(upstreamCount(), before);
        },
      ),
      { numRuns: RUNS },
    );
    const climb = await raw(tb.url, {
      method: 'GET',
      path: '/anthropic/../api/v1/users',
      headers: { 'x-api-key': key },
    });
    assert.ok(!climb.body.includes('fuzz@example.com'), 'a provider path reached the admin API');
  });

  it('with a valid key, every spelling of every provider path is metered, allow-listed or refused: nothing reaches a provider ungoverned', async () => {
    /** What the upstream may be asked, after the bridge's canonicalisation, without a record. */
    const unmetered = [
      /^POST \/v1\/messages\/count_tokens$/,
      /^(GET|HEAD) \/v1\/models(\/[^/]+)?$/,
      /^(GET|HEAD) \/models(\/[^/]+)?$/,
      /^POST \/responses\/input_tokens$/,
      /^(GET|DELETE) \/responses\/[^/]+$/,
      /^GET \/responses\/[^/]+\/input_items$/,
      /^POST \/responses\/[^/]+\/cancel$/,
    ];
    const metered = new Set(['POST /v1/messages', 'POST /chat/completions', 'POST /responses']);
    const word = fc.constantFrom(
      'v1',
      'V1',
      'messages',
      'Messages',
      'chat',
      'completions',
      'responses',
      'models',
      'count_tokens',
      'batches',
      'files',
      'embeddings',
      'images',
      'audio',
      'x',
      '..',
      '%2e%2e',
      '',
    );
    const decorate = fc.constantFrom('', '', '/', ';a=b', ';', '//', '#', '#/x', '%23');
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/anthropic', '/openai/v1'),
        fc.array(fc.tuple(word, decorate), { minLength: 1, maxLength: 4 }),
        fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'HEAD'),
        fc.boolean(),
        async (prefix, parts, method, trailing) => {
          const path = `${prefix}/${parts.map(([w, d]) => w + d).join('/')}${trailing ? '/' : ''}`;
          const seen = [...anthropic.requests, ...openai.requests].length;
          const records = (await tb.interceptions(0)).length;
          const res = await raw(tb.url, {
            method,
            path,
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body:
              method === 'GET' || method === 'HEAD'
                ? undefined
                : JSON.stringify({
                    model: 'gpt-4.1',
                    max_tokens: 1,
                    messages: [{ role: 'user', content: 'x' }],
                    input: 'x',
                  }),
          });
          assert.ok(res.status < 500, `${method} ${path} answered ${res.status}: ${res.body.slice(0, 200)}`);
          const sent = [...anthropic.requests, ...openai.requests].slice(seen);
          for (const r of sent) {
            const p = (r.url.split('?')[0] ?? '').replace(/^\/v1(?=\/(chat|responses|models))/, '');
            const what = `${r.method} ${p}`;
            if (metered.has(what)) {
              const after = await tb.interceptions(records + 1);
              assert.ok(
                after.length > records,
                `${method} ${path} was forwarded as ${what} without a record`,
              );
            } else
              assert.ok(
                unmetered.some((u) => u.test(what)),
                `${method} ${path} was forwarded as ${what}`,
              );
          }
        },
      ),
      { numRuns: Math.min(RUNS, 300) },
    );
    // A dot segment with `;parameters` fills an allow-listed `:id` once they are dropped, and the
    // upstream URL would resolve it: `/responses/..;/input_items` would reach `/input_items`.
    for (const [method, path] of [
      ['GET', '/openai/v1/responses/..;/input_items'],
      ['POST', '/openai/v1/responses/%2e%2e;x/cancel'],
      ['GET', '/openai/v1/models/..;'],
      ['GET', '/openai/v1/models/.;a=b'],
      // A `#` would cut the upstream URL's path short, behind the route judged here.
      ['POST', '/openai/v1/responses/#/cancel'],
      ['POST', '/openai/v1/responses#/x/cancel'],
      ['POST', '/anthropic/v1/messages/count_tokens#'],
      ['POST', '/openai/v1/responses?a=b#c'],
    ] as const) {
      const seen = [...anthropic.requests, ...openai.requests].length;
      const res = await raw(tb.url, {
        method,
        path,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: method === 'POST' ? '{}' : undefined,
      });
      assert.equal(res.status, 400, `${method} ${path} answered ${res.status}`);
      assert.match(res.body, /dot segments/, path);
      assert.equal(
        [...anthropic.requests, ...openai.requests].length,
        seen,
        `${method} ${path} reached upstream`,
      );
    }
  });

  it('admin and member routes validate queries and bodies, answering 4xx with a stable code', async () => {
    const routes: [string, string][] = [
      ['GET', '/api/v1/interceptions'],
      ['GET', '/api/v1/usage'],
      ['GET', '/api/v1/usage/top'],
      ['GET', '/api/v1/usage/me'],
      ['GET', '/api/v1/alerts'],
      ['POST', '/api/v1/users'],
      ['POST', '/api/v1/users/fuzz@example.com/keys'],
      ['PUT', '/api/v1/budgets'],
      ['PUT', '/api/v1/rate-limits'],
      ['PUT', '/api/v1/teams/x/models'],
      ['PUT', '/api/v1/prices/m'],
    ];
    const query = fc.dictionary(
      fc.constantFrom('limit', 'cursor', 'since', 'until', 'user', 'groupBy', 'by', 'format', 'period', 'x'),
      fc.oneof(
        fc.string({ maxLength: 40 }),
        fc.constantFrom('-1', '0', '1e309', 'NaN', '2026-13-45T99:99:99Z', '%00', 'null'),
      ),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes),
        query,
        hostileBytes,
        contentType,
        async ([method, route], q, body, type) => {
          const qs = new URLSearchParams(q).toString();
          const headers: Record<string, string> = { authorization: `Bearer ${key}` };
          if (type) headers['content-type'] = type;
          const res = await raw(tb.url, {
            method,
            path: `${route}${qs ? `?${qs}` : ''}`,
            headers,
            body: method === 'GET' ? undefined : body,
          });
          assert.ok(
            res.status < 500,
            `${method} ${route}?${qs} answered ${res.status}: ${res.body.slice(0, 200)}`,
          );
          if (res.status >= 400) {
            const code = (JSON.parse(res.body) as { error?: { code?: string } }).error?.code;
            assert.match(String(code), /^[a-z_]+$/, `no stable code: ${res.body.slice(0, 200)}`);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('hostile header values never take the bridge down', async () => {
    const value = fc.string({
      unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
      maxLength: 500,
    });
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(
          fc.constantFrom(
            'x-api-key',
            'authorization',
            'content-length-x',
            'anthropic-version',
            'x-claude-code-session-id',
            'session-id',
            'originator',
            'user-agent',
            'traceparent',
            'accept-encoding',
            'connection-x',
          ),
          value,
        ),
        async (headers) => {
          const res = await raw(tb.url, {
            method: 'POST',
            path: '/anthropic/v1/messages',
            headers: { 'content-type': 'application/json', ...headers },
            body: '{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}',
          });
          assert.ok(res.status < 500, `answered ${res.status}: ${res.body.slice(0, 200)}`);
        },
      ),
      { numRuns: RUNS },
    );
  });
});
