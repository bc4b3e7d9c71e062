import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import Anthropic, { RateLimitError } from '@anthropic-ai/sdk';
import { loadConfig } from '../../server/config';
import { endpointOf } from '../../server/providers/google-cloud';
import { mapVertexError } from '../../server/providers/vertex-anthropic/errors';
import { priceModelOf, vertexModelId } from '../../server/providers/vertex-anthropic/models';
import { CLAUDE, claudeEnv } from '../helpers/agent-cli';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { run } from '../helpers/run';
import {
  testServiceAccount,
  VERTEX_COUNT,
  VERTEX_PROJECT,
  VERTEX_REGION,
  VERTEX_TEXT,
  VERTEX_USAGE,
  VertexMock,
} from '../helpers/vertex-mock';

const MODELS = `/v1/projects/${VERTEX_PROJECT}/locations/${VERTEX_REGION}/publishers/anthropic/models/`;
const SONNET = 'claude-sonnet-4-5@20250929';
const HAIKU = 'claude-haiku-4-5-20251001';

/** A bridge with Vertex instances whose service-account key file points its token_uri at the mock. */
async function bridgeWith(mock: VertexMock, extra: Record<string, unknown> = {}): Promise<TestBridge> {
  const dir = await tempDir();
  const keyFile = path.join(dir, 'sa.json');
  await fs.writeFile(keyFile, JSON.stringify(account.json(mock.tokenUri)), { mode: 0o600 });
  const entry = {
    type: 'vertex-anthropic',
    project: VERTEX_PROJECT,
    region: VERTEX_REGION,
    baseUrl: mock.url,
  };
  const file = path.join(dir, 'providers.json');
  await fs.writeFile(
    file,
    JSON.stringify({
      providers: {
        vertex: { ...entry, credentialsFile: keyFile },
        'vertex-short': { ...entry, credentialsFile: keyFile },
        'vertex-nokey': { ...entry, credentialsFile: path.join(dir, 'missing.json') },
        ...extra,
      },
    }),
  );
  return startBridge('http://127.0.0.1:9', { AIBRIDGE_PROVIDERS_FILE: file });
}

const account = testServiceAccount();

describe('Google Vertex AI (Claude) as an instance', () => {
  let mock: VertexMock;
  let tb: TestBridge;
  let dev: { key: string };
  let client: Anthropic;

  before(async () => {
    mock = await new VertexMock(account).start();
    tb = await bridgeWith(mock);
    dev = await tb.addUser('vertex@example.com');
    client = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/vertex`, maxRetries: 0 });
  });

  after(async () => {
    await tb?.close();
    await mock?.close();
  });

  beforeEach(() => {
    mock.scenario = 'text';
    mock.expiresIn = 3600;
  });

  async function latest(n: number) {
    return (await tb.interceptions(n, dev.key))[0]!;
  }

  it('answers through :rawPredict with a token from the service account, metered exactly', async () => {
    const before = (await tb.interceptions(0, dev.key)).length;
    const msg = await client.messages.create(
      { model: SONNET, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] },
      {
        headers: {
          'anthropic-beta': 'interleaved-thinking-2025-05-14,claude-code-20250219,oauth-2025-04-20',
          // A quota project of the client's own would bill another project with the instance's token.
          'x-goog-user-project': 'someone-elses-project',
        },
      },
    );
    assert.equal(msg.content[0]?.type === 'text' ? msg.content[0].text : '', VERTEX_TEXT);
    assert.deepEqual(msg.usage, VERTEX_USAGE);
    const seen = mock.seen.at(-1)!;
    assert.equal(seen.path, `${MODELS}${SONNET}:rawPredict`);
    assert.equal(seen.tokenValid, true, 'the bearer token is one the token endpoint issued');
    assert.equal(seen.token, mock.grants.at(-1)?.token);
    assert.equal(seen.body.anthropic_version, 'vertex-2023-10-16');
    assert.ok(!('model' in seen.body), 'no model in the body');
    assert.deepEqual(seen.body.messages, [{ role: 'user', content: 'hi' }]);
    assert.equal(seen.headers['anthropic-beta'], 'interleaved-thinking-2025-05-14', 'betas filtered');
    assert.equal(seen.headers['x-api-key'], undefined, 'the bridge key never goes upstream');
    assert.equal(
      seen.headers['x-goog-user-project'],
      undefined,
      "the client's quota project never goes upstream",
    );
    // The assertion the bridge signed: the service account, the cloud-platform scope, Google's audience.
    const claims = mock.grants.at(-1)!.claims;
    assert.equal(claims.iss, account.email);
    assert.equal(claims.scope, 'https://www.googleapis.com/auth/cloud-platform');
    const rec = await latest(before + 1);
    assert.equal(rec.provider, 'vertex');
    assert.equal(rec.model, 'claude-sonnet-4-5-20250929');
    assert.equal(rec.streamed, false);
    assert.equal(rec.usage.input, VERTEX_USAGE.input_tokens);
    assert.equal(rec.usage.output, VERTEX_USAGE.output_tokens);
    assert.equal(rec.usage.cacheRead, VERTEX_USAGE.cache_read_input_tokens);
    assert.equal(rec.priceKnown, true, 'priced as the Anthropic model the Vertex id names');
    assert.ok((rec.costUsd ?? 0) > 0);
    assert.equal(rec.upstreamRequestId, `req_vrtx_${mock.seen.length}`);
  });

  it('streams through :streamRawPredict (stream kept in the body), usage exact, token cached', async () => {
    const before = (await tb.interceptions(0, dev.key)).length;
    const grants = mock.grants.length;
    const stream = client.messages.stream({
      // Anthropic's dated name, as Claude Code sends it, is sent as Vertex spells it.
      model: HAIKU,
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hi' }],
    });
    let text = '';
    stream.on('text', (t) => {
      text += t;
    });
    const final = await stream.finalMessage();
    assert.equal(text, VERTEX_TEXT);
    assert.equal(final.usage.input_tokens, VERTEX_USAGE.input_tokens);
    assert.equal(final.usage.output_tokens, VERTEX_USAGE.output_tokens);
    const seen = mock.seen.at(-1)!;
    assert.equal(seen.path, `${MODELS}claude-haiku-4-5@20251001:streamRawPredict`);
    assert.equal(seen.body.stream, true);
    assert.equal(seen.body.anthropic_version, 'vertex-2023-10-16');
    assert.equal(seen.tokenValid, true);
    assert.equal(mock.grants.length, grants, 'the cached token was used, none fetched');
    const rec = await latest(before + 1);
    assert.equal(rec.streamed, true);
    assert.equal(rec.status, 'ok');
    assert.equal(rec.model, HAIKU);
    assert.equal(rec.usage.input, VERTEX_USAGE.input_tokens);
    assert.equal(rec.usage.output, VERTEX_USAGE.output_tokens);
    assert.equal(rec.usage.cacheRead, VERTEX_USAGE.cache_read_input_tokens);
    assert.equal(rec.priceKnown, true);
  });

  it('a streamed tool call reaches the client and the record', async () => {
    mock.scenario = 'tool';
    const before = (await tb.interceptions(0, dev.key)).length;
    const final = await client.messages
      .stream({
        model: SONNET,
        max_tokens: 64,
        tools: [
          { name: 'get_weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } },
        ],
        messages: [{ role: 'user', content: 'weather in Rome?' }],
      })
      .finalMessage();
    const call = final.content.find((b) => b.type === 'tool_use');
    assert.deepEqual(call && call.type === 'tool_use' ? call.input : null, { city: 'Rome' });
    assert.equal(final.stop_reason, 'tool_use');
    const rec = await latest(before + 1);
    assert.equal(rec.toolCalls.length, 1);
    assert.equal(rec.toolCalls[0]?.name, 'get_weather');
    assert.deepEqual(rec.toolCalls[0]?.input, { city: 'Rome' });
    assert.equal(rec.usage.output, VERTEX_USAGE.output_tokens);
  });

  it('a non-streamed tool call is metered', async () => {
    mock.scenario = 'tool';
    const before = (await tb.interceptions(0, dev.key)).length;
    const msg = await client.messages.create({
      model: SONNET,
      max_tokens: 64,
      tools: [{ name: 'get_weather', input_schema: { type: 'object' } }],
      messages: [{ role: 'user', content: 'weather?' }],
    });
    assert.equal(msg.content[0]?.type, 'tool_use');
    const rec = await latest(before + 1);
    assert.deepEqual(rec.toolCalls[0]?.input, { city: 'Rome' });
    assert.equal(rec.usage.input, VERTEX_USAGE.input_tokens);
  });

  it('count_tokens goes to count-tokens:rawPredict with the Vertex model id in the body', async () => {
    const counted = await client.messages.countTokens({
      model: HAIKU,
      messages: [{ role: 'user', content: 'count me' }],
    });
    assert.equal(counted.input_tokens, VERTEX_COUNT);
    const seen = mock.seen.at(-1)!;
    assert.equal(seen.path, `${MODELS}count-tokens:rawPredict`);
    assert.equal(seen.body.model, 'claude-haiku-4-5@20251001');
    assert.equal(seen.body.anthropic_version, 'vertex-2023-10-16');
    assert.equal(seen.tokenValid, true);
  });

  it('RESOURCE_EXHAUSTED is a 429 in Anthropic’s shape with retry-after from RetryInfo', async () => {
    mock.scenario = 'quota';
    const before = (await tb.interceptions(0, dev.key)).length;
    await assert.rejects(
      client.messages.create({ model: SONNET, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
      (err: unknown) => {
        assert.ok(err instanceof RateLimitError, String(err));
        assert.equal(err.status, 429);
        assert.equal(err.headers?.get('retry-after'), '7');
        const body = err.error as { type: string; error: { type: string; message: string } };
        assert.equal(body.type, 'error');
        assert.equal(body.error.type, 'rate_limit_error');
        assert.match(body.error.message, /^RESOURCE_EXHAUSTED: Quota exceeded for aiplatform/);
        return true;
      },
    );
    const rec = await latest(before + 1);
    assert.equal(rec.status, 'error');
    assert.equal(rec.httpStatus, 429);
  });

  it('Claude’s own errors, relayed by Vertex in Anthropic’s shape, reach the client unchanged', async () => {
    mock.scenario = 'anthropic-400';
    await assert.rejects(
      client.messages.create({ model: SONNET, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
      (err: unknown) => {
        assert.ok(err instanceof Anthropic.BadRequestError, String(err));
        assert.deepEqual(err.error, {
          type: 'error',
          error: { type: 'invalid_request_error', message: 'max_tokens: Field required' },
          request_id: 'req_vrtx_bad',
        });
        return true;
      },
    );
  });

  it('refreshes a token before it expires: one within the library’s refresh window is replaced', async () => {
    // Tokens with 60 s left are inside google-auth-library's 5-minute eager-refresh window: each use
    // fetches the next one while the old is still valid, so no request ever carries an expired token.
    mock.expiresIn = 60;
    const short = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/vertex-short`, maxRetries: 0 });
    const grants = mock.grants.length;
    await short.messages.create({ model: SONNET, max_tokens: 8, messages: [{ role: 'user', content: 'a' }] });
    const first = mock.seen.at(-1)!;
    await short.messages.create({ model: SONNET, max_tokens: 8, messages: [{ role: 'user', content: 'b' }] });
    const second = mock.seen.at(-1)!;
    assert.equal(mock.grants.length, grants + 2, 'a second token was fetched');
    assert.ok(first.tokenValid && second.tokenValid);
    assert.notEqual(first.token, second.token, 'the refreshed token carried the next request');
    assert.equal(second.token, mock.grants.at(-1)?.token);
  });

  it('a credential that cannot be obtained is a 503 naming the instance, nothing sent upstream', async () => {
    const sent = mock.seen.length;
    const nokey = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/vertex-nokey`, maxRetries: 0 });
    await assert.rejects(
      nokey.messages.create({ model: SONNET, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
      (err: unknown) => {
        assert.ok(err instanceof Anthropic.APIError);
        assert.equal(err.status, 503);
        const message = String((err.error as { error: { message: string } }).error.message);
        assert.match(message, /"vertex-nokey"/);
        assert.match(message, /missing\.json cannot be read \(ENOENT\)/);
        return true;
      },
    );
    assert.equal(mock.seen.length, sent);
  });

  it('a request naming no model is a 400 in Anthropic’s shape, never sent', async () => {
    const sent = mock.seen.length;
    const res = await fetch(`${tb.url}/vertex/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': dev.key, 'content-type': 'application/json' },
      body: JSON.stringify({ max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { type: string; error: { type: string } };
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal(mock.seen.length, sent);
  });
});

describe('Vertex with application default credentials', () => {
  let tb: TestBridge;
  let saved: string | undefined;

  before(async () => {
    saved = process.env.GOOGLE_APPLICATION_CREDENTIALS;
    // ADC's first source; a file that is not there is the library's error, not a metadata-server wait.
    process.env.GOOGLE_APPLICATION_CREDENTIALS = '/nonexistent/aibridge-adc.json';
    const dir = await tempDir();
    const file = path.join(dir, 'providers.json');
    await fs.writeFile(
      file,
      JSON.stringify({
        providers: {
          'vertex-adc': { type: 'vertex-anthropic', project: VERTEX_PROJECT, region: VERTEX_REGION },
        },
      }),
    );
    tb = await startBridge('http://127.0.0.1:9', { AIBRIDGE_PROVIDERS_FILE: file });
  });

  after(async () => {
    await tb?.close();
    if (saved === undefined) delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
    else process.env.GOOGLE_APPLICATION_CREDENTIALS = saved;
  });

  it('no credential from ADC is a 503 naming the instance and the library’s reason', async () => {
    const dev = await tb.addUser('adc@example.com');
    const res = await fetch(`${tb.url}/vertex-adc/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': dev.key, 'content-type': 'application/json' },
      body: JSON.stringify({ model: SONNET, max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
    });
    assert.equal(res.status, 503);
    const body = (await res.json()) as { type: string; error: { type: string; message: string } };
    assert.equal(body.type, 'error');
    assert.match(body.error.message, /"vertex-adc"/);
    assert.match(body.error.message, /GOOGLE_APPLICATION_CREDENTIALS/);
  });
});

describe('the real claude CLI through /vertex', function () {
  this.timeout(120_000);
  let mock: VertexMock;
  let tb: TestBridge;

  before(async () => {
    mock = await new VertexMock(account).start();
    tb = await bridgeWith(mock);
  });

  after(async () => {
    await tb?.close();
    await mock?.close();
  });

  it('claude -p with ANTHROPIC_BASE_URL=<bridge>/vertex prints the answer, metered as a stream', async () => {
    const dev = await tb.addUser('claude-vertex@example.com');
    const home = await tempDir('aibridge-claude-home-');
    const env = {
      ...claudeEnv({ bridgeUrl: tb.url, key: dev.key, home }),
      ANTHROPIC_BASE_URL: `${tb.url}/vertex`,
    };
    const res = await run(CLAUDE, ['-p', 'Say hello to Vertex', '--model', HAIKU], env, home);
    assert.equal(res.code, 0, `claude failed: ${res.stderr}\n${res.stdout}`);
    assert.equal(res.stdout.trim(), VERTEX_TEXT);
    assert.ok(mock.seen.length >= 1);
    assert.ok(mock.seen.every((r) => r.tokenValid && r.body.anthropic_version === 'vertex-2023-10-16'));
    assert.ok(
      mock.seen.some((r) => r.path === `${MODELS}claude-haiku-4-5@20251001:streamRawPredict`),
      `streamed as the Vertex id: ${mock.seen.map((r) => r.path).join(', ')}`,
    );
    assert.ok(
      mock.seen.every((r) => !String(r.headers['anthropic-beta'] ?? '').includes('claude-code-20250219')),
      'first-party betas are filtered out',
    );
    const recs = await tb.interceptions(mock.seen.length, dev.key);
    const mine = recs.find((r) => r.prompt === 'Say hello to Vertex');
    assert.ok(mine, `no interception with the prompt: ${JSON.stringify(recs.map((r) => r.prompt))}`);
    assert.equal(mine.client, 'claude-code');
    assert.equal(mine.provider, 'vertex');
    assert.equal(mine.streamed, true);
    assert.equal(mine.usage.input, VERTEX_USAGE.input_tokens);
    assert.equal(mine.usage.output, VERTEX_USAGE.output_tokens);
  });
});

describe('vertex-anthropic instances and errors, unit', () => {
  it('validates the providers-file entry, naming the field', async () => {
    const dir = await tempDir();
    const ok = { type: 'vertex-anthropic', project: 'my-project', region: 'us-east5' };
    const cases: [unknown, RegExp][] = [
      [
        { type: 'vertex-anthropic', region: 'us-east5' },
        /providers\.v\.project: expected a Google Cloud project id/,
      ],
      [{ ...ok, region: 'mars' }, /providers\.v\.region: expected a Vertex AI region/],
      [{ ...ok, apiKey: 'k' }, /providers\.v\.apiKey: a vertex-anthropic instance uses Google OAuth2/],
      [{ ...ok, credentialsFile: 3 }, /providers\.v\.credentialsFile: expected the path/],
      [{ ...ok, models: { m: '' } }, /providers\.v\.models\.m: expected a Vertex model id/],
      [{ ...ok, deployments: {} }, /providers\.v\.deployments: unknown field/],
    ];
    for (const [entry, re] of cases) {
      const file = path.join(dir, `p-${Math.random().toString(36).slice(2)}.json`);
      await fs.writeFile(file, JSON.stringify({ providers: { v: entry } }));
      assert.throws(() => loadConfig({ 'data-dir': dir }, { AIBRIDGE_PROVIDERS_FILE: file }), re);
    }
    const good = path.join(dir, 'good.json');
    await fs.writeFile(good, JSON.stringify({ providers: { v: { ...ok, region: 'global' } } }));
    assert.doesNotThrow(() => loadConfig({ 'data-dir': dir }, { AIBRIDGE_PROVIDERS_FILE: good }));
  });

  it('the endpoint is the region’s host, the global one for `global`, or the instance’s baseUrl', () => {
    const def = 'https://{region}-aiplatform.googleapis.com';
    assert.equal(endpointOf(def, 'us-east5'), 'https://us-east5-aiplatform.googleapis.com');
    assert.equal(endpointOf(def, 'global'), 'https://aiplatform.googleapis.com');
    assert.equal(endpointOf('https://vertex.internal.example', 'global'), 'https://vertex.internal.example');
  });

  it('maps model names both ways', () => {
    assert.equal(vertexModelId('claude-sonnet-4-5-20250929', {}), 'claude-sonnet-4-5@20250929');
    assert.equal(vertexModelId('claude-haiku-4-5@20251001', {}), 'claude-haiku-4-5@20251001');
    assert.equal(vertexModelId('claude-opus-4-1', {}), 'claude-opus-4-1');
    assert.equal(
      vertexModelId('sonnet', { sonnet: 'claude-3-5-sonnet-v2@20241022' }),
      'claude-3-5-sonnet-v2@20241022',
    );
    assert.equal(priceModelOf('claude-sonnet-4-5@20250929'), 'claude-sonnet-4-5-20250929');
    assert.equal(priceModelOf('claude-3-5-sonnet-v2@20241022'), 'claude-3-5-sonnet-20241022');
    assert.equal(priceModelOf('claude-opus-4-1'), 'claude-opus-4-1');
  });

  it('maps Google’s error shapes to Anthropic’s', () => {
    const google = (code: number, status: string, message: string) =>
      Buffer.from(JSON.stringify({ error: { code, message, status } }));
    const quota = mapVertexError(429, google(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded'));
    assert.equal(quota.status, 429);
    assert.equal(quota.retryAfter, '1');
    assert.deepEqual(quota.body, {
      type: 'error',
      error: { type: 'rate_limit_error', message: 'RESOURCE_EXHAUSTED: Quota exceeded' },
    });
    assert.equal(mapVertexError(429, google(429, 'RESOURCE_EXHAUSTED', 'q'), '30').retryAfter, '30');
    const denied = mapVertexError(403, google(403, 'PERMISSION_DENIED', 'no aiplatform.endpoints.predict'));
    assert.deepEqual(denied.body, {
      type: 'error',
      error: { type: 'permission_error', message: 'PERMISSION_DENIED: no aiplatform.endpoints.predict' },
    });
    assert.equal(denied.retryAfter, undefined);
    const arrayForm = mapVertexError(
      404,
      Buffer.from(
        JSON.stringify([{ error: { code: 404, message: 'model not found', status: 'NOT_FOUND' } }]),
      ),
    );
    assert.deepEqual(arrayForm.body, {
      type: 'error',
      error: { type: 'not_found_error', message: 'NOT_FOUND: model not found' },
    });
    const text = mapVertexError(502, Buffer.from('<html>Bad Gateway</html>'));
    assert.deepEqual(text.body, {
      type: 'error',
      error: { type: 'api_error', message: '<html>Bad Gateway</html>' },
    });
  });
});

/** The AWS SDK chain's variables, set for the test and given back after (no credentials found by default). */
function awsEnv(vars: Record<string, string>): () => void {
  const names = [
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AWS_SESSION_TOKEN',
    'AWS_PROFILE',
    'AWS_CONFIG_FILE',
    'AWS_SHARED_CREDENTIALS_FILE',
    'AWS_EC2_METADATA_DISABLED',
    'AWS_WEB_IDENTITY_TOKEN_FILE',
    'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
    'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  ];
  const saved = Object.fromEntries(names.map((k) => [k, process.env[k]]));
  for (const k of names) delete process.env[k];
  Object.assign(process.env, {
    AWS_CONFIG_FILE: '/nonexistent/aibridge-test-aws',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aibridge-test-aws',
    AWS_EC2_METADATA_DISABLED: 'true',
    ...vars,
  });
  return () => {
    for (const k of names) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  };
}

interface Readiness {
  status: string;
  upstreams?: Record<string, { configured: boolean; credential?: { ok: boolean | null; error?: string } }>;
}

describe('/readyz reports provider credentials that cannot be obtained', () => {
  let mock: VertexMock;
  let tb: TestBridge;
  let clock: TestClock;
  let restore: () => void;
  let dir: string;

  before(async () => {
    restore = awsEnv({});
    mock = await new VertexMock(account).start();
    dir = await tempDir();
    const entry = {
      type: 'vertex-anthropic',
      project: VERTEX_PROJECT,
      region: VERTEX_REGION,
      baseUrl: mock.url,
    };
    await fs.writeFile(path.join(dir, 'sa.json'), JSON.stringify(account.json(mock.tokenUri)));
    const file = path.join(dir, 'providers.json');
    await fs.writeFile(
      file,
      JSON.stringify({
        providers: {
          vertex: { ...entry, credentialsFile: path.join(dir, 'sa.json') },
          'vertex-late': { ...entry, credentialsFile: path.join(dir, 'late.json') },
          bedrock: { type: 'bedrock', region: 'us-east-1', baseUrl: mock.url },
        },
      }),
    );
    clock = new TestClock();
    tb = await startBridge('http://127.0.0.1:9', { AIBRIDGE_PROVIDERS_FILE: file }, undefined, { clock });
  });

  after(async () => {
    await tb?.close();
    await mock?.close();
    restore();
  });

  const readyz = (key: string | null) => tb.api<Readiness>('GET', '/readyz', key);

  it('names each instance whose credential fails, and why, to admins; stays ready (degraded)', async () => {
    const res = await readyz(tb.adminKey);
    assert.equal(res.status, 200, 'one failing instance does not take the replica out of rotation');
    assert.equal(res.body.status, 'degraded');
    const up = res.body.upstreams!;
    assert.deepEqual(up.vertex?.credential, { ok: true });
    assert.equal(up.anthropic?.credential?.ok, true);
    assert.equal(up['vertex-late']?.credential?.ok, false);
    assert.match(up['vertex-late']?.credential?.error ?? '', /late\.json cannot be read \(ENOENT\)/);
    assert.equal(up.bedrock?.credential?.ok, false);
    assert.match(up.bedrock?.credential?.error ?? '', /credentials/i);
    const text = JSON.stringify(res.body);
    assert.ok(
      !text.includes('PRIVATE KEY') && !text.includes('ya29.'),
      'no key material or token in the answer',
    );
    const anonymous = await readyz(null);
    assert.equal(anonymous.status, 200);
    assert.deepEqual(anonymous.body, { status: 'ready' }, 'probes learn only up or down');
  });

  it('takes a request’s outcome at once, and checks again itself only after 30 s', async () => {
    const grants = mock.grants.length;
    await readyz(tb.adminKey);
    assert.equal(mock.grants.length, grants, 'a probe within 30 s obtains no credential');
    // The late key file appears: the next request through the instance obtains a token, and says so.
    await fs.writeFile(path.join(dir, 'late.json'), JSON.stringify(account.json(mock.tokenUri)));
    const dev = await tb.addUser('late@example.com');
    const late = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/vertex-late`, maxRetries: 0 });
    await late.messages.create({ model: SONNET, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });
    assert.deepEqual((await readyz(tb.adminKey)).body.upstreams?.['vertex-late']?.credential, { ok: true });
    // AWS credentials appear: no request goes to bedrock, so the probe sees them at its next check.
    process.env.AWS_ACCESS_KEY_ID = 'AKIATESTREADYZ000001';
    process.env.AWS_SECRET_ACCESS_KEY = 'readyzTestSecretAccessKey0000000000000000';
    assert.equal(
      (await readyz(tb.adminKey)).body.upstreams?.bedrock?.credential?.ok,
      false,
      'not yet rechecked',
    );
    clock.advance(30_000);
    const after = await readyz(tb.adminKey);
    assert.deepEqual(after.body.upstreams?.bedrock?.credential, { ok: true });
    assert.equal(after.body.status, 'ready');
    assert.ok(!JSON.stringify(after.body).includes('readyzTestSecret'), 'no secret in the answer');
  });
});
