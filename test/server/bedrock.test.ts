import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import Anthropic, { RateLimitError } from '@anthropic-ai/sdk';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { fromUtf8, toUtf8 } from '@smithy/util-utf8';
import { loadConfig } from '../../server/config';
import { awsErrorOf, mapAwsError } from '../../server/providers/bedrock/errors';
import { anthropicSse } from '../../server/providers/bedrock/eventstream';
import { priceModelOf } from '../../server/providers/bedrock/models';
import {
  AWS_TEST_CREDENTIALS,
  BEDROCK_COUNT,
  BEDROCK_REGION,
  BEDROCK_TEXT,
  BEDROCK_USAGE,
  BedrockMock,
} from '../helpers/bedrock-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { writeProvidersFile } from '../helpers/providers-file';
import { run } from '../helpers/run';

const PROFILE = 'us.anthropic.claude-haiku-4-5-20251001-v1:0';
const AWS_VARS = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_CREDENTIAL_EXPIRATION',
  'AWS_PROFILE',
  'AWS_CONFIG_FILE',
  'AWS_SHARED_CREDENTIALS_FILE',
  'AWS_EC2_METADATA_DISABLED',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
  'AWS_CONTAINER_CREDENTIALS_FULL_URI',
] as const;

/** Sets the process environment the SDK's default chain reads, and gives back a function restoring it. */
function awsEnv(vars: Partial<Record<(typeof AWS_VARS)[number], string>>): () => void {
  const saved = Object.fromEntries(AWS_VARS.map((k) => [k, process.env[k]]));
  for (const k of AWS_VARS) delete process.env[k];
  Object.assign(process.env, vars);
  return () => {
    for (const k of AWS_VARS) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  };
}

async function bridgeWith(mockUrl: string): Promise<TestBridge> {
  const file = await writeProvidersFile({
    bedrock: {
      type: 'bedrock',
      region: BEDROCK_REGION,
      baseUrl: mockUrl,
      models: {
        'claude-haiku-4-5-20251001': PROFILE,
        'haiku-global': 'global.anthropic.claude-haiku-4-5-20251001-v1:0',
      },
    },
  });
  return startBridge('http://127.0.0.1:9', { AIBRIDGE_PROVIDERS_FILE: file });
}

const NOWHERE = '/nonexistent/aibridge-test-aws';

describe('AWS Bedrock (Claude) as an instance', () => {
  let mock: BedrockMock;
  let tb: TestBridge;
  let dev: { key: string };
  let client: Anthropic;
  let restore: () => void;

  before(async () => {
    // Temporary credentials, read by the bridge through the SDK's default chain (environment first).
    // They expire within the SDK's refresh window, so the chain reads them again before each use.
    restore = awsEnv({
      AWS_ACCESS_KEY_ID: AWS_TEST_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: AWS_TEST_CREDENTIALS.secretAccessKey,
      AWS_SESSION_TOKEN: AWS_TEST_CREDENTIALS.sessionToken,
      AWS_CREDENTIAL_EXPIRATION: new Date(Date.now() + 120_000).toISOString(),
      AWS_CONFIG_FILE: NOWHERE,
      AWS_SHARED_CREDENTIALS_FILE: NOWHERE,
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    mock = await new BedrockMock().start();
    tb = await bridgeWith(mock.url);
    dev = await tb.addUser('bedrock@example.com');
    client = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/bedrock`, maxRetries: 0 });
  });

  after(async () => {
    await tb?.close();
    await mock?.close();
    restore();
  });

  beforeEach(() => {
    mock.scenario = 'text';
  });

  async function latest(n: number) {
    return (await tb.interceptions(n, dev.key))[0]!;
  }

  it('answers a Messages request through InvokeModel, signed, rewritten and metered exactly', async () => {
    const before = (await tb.interceptions(0, dev.key)).length;
    const msg = await client.messages.create(
      { model: 'claude-haiku-4-5-20251001', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] },
      {
        headers: {
          'anthropic-beta': 'interleaved-thinking-2025-05-14,claude-code-20250219,oauth-2025-04-20',
        },
      },
    );
    assert.equal(msg.content[0]?.type === 'text' ? msg.content[0].text : '', BEDROCK_TEXT);
    const seen = mock.seen.at(-1)!;
    assert.equal(seen.signatureValid, true, 'SigV4 signature recomputed by the mock matches');
    assert.equal(seen.path, `/model/${encodeURIComponent(PROFILE)}/invoke`);
    assert.equal(seen.body.anthropic_version, 'bedrock-2023-05-31');
    assert.ok(!('model' in seen.body) && !('stream' in seen.body), 'no model or stream in the body');
    assert.deepEqual(seen.body.anthropic_beta, ['interleaved-thinking-2025-05-14'], 'betas filtered');
    assert.equal(seen.headers.authorization?.startsWith('AWS4-HMAC-SHA256 Credential=ASIA'), true);
    assert.ok(!String(seen.headers.authorization).includes(dev.key), 'the bridge key never goes upstream');
    assert.equal(seen.headers['x-api-key'], undefined);
    const rec = await latest(before + 1);
    assert.equal(rec.provider, 'bedrock');
    assert.equal(rec.model, 'claude-haiku-4-5-20251001');
    assert.equal(rec.streamed, false);
    assert.equal(rec.usage.input, BEDROCK_USAGE.input_tokens);
    assert.equal(rec.usage.output, BEDROCK_USAGE.output_tokens);
    assert.equal(rec.usage.cacheRead, BEDROCK_USAGE.cache_read_input_tokens);
    assert.equal(rec.priceKnown, true, 'priced as the Anthropic model the profile names');
    assert.ok((rec.costUsd ?? 0) > 0);
    assert.equal(rec.upstreamRequestId, `req-bdrk-${mock.seen.length}`);
  });

  it('prices a regional profile at AWS’s regional price, a global one at the global price; both recorded as the model', async () => {
    const cost = (usd: number) => usd.toFixed(10);
    const { input_tokens: input, output_tokens: output, cache_read_input_tokens: read } = BEDROCK_USAGE;
    // AWS's entries for Haiku 4.5: $1.10 / $5.50 / $0.11 regional, $1 / $5 / $0.10 global.
    const regional = (input * 1.1 + output * 5.5 + read * 0.11) / 1e6;
    const global = (input * 1 + output * 5 + read * 0.1) / 1e6;
    for (const [model, want] of [
      ['claude-haiku-4-5-20251001', regional],
      ['haiku-global', global],
    ] as const) {
      const before = (await tb.interceptions(0, dev.key)).length;
      await client.messages.create({ model, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] });
      const rec = await latest(before + 1);
      assert.equal(rec.model, 'claude-haiku-4-5-20251001', model);
      assert.equal(cost(rec.costUsd!), cost(want), model);
    }
  });

  it('streams: the event stream is re-emitted as Anthropic SSE the SDK reads, usage exact', async () => {
    const before = (await tb.interceptions(0, dev.key)).length;
    const stream = client.messages.stream({
      model: PROFILE,
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hi' }],
    });
    let text = '';
    stream.on('text', (t) => {
      text += t;
    });
    const final = await stream.finalMessage();
    assert.equal(text, BEDROCK_TEXT);
    assert.equal(final.usage.input_tokens, BEDROCK_USAGE.input_tokens);
    assert.equal(final.usage.output_tokens, BEDROCK_USAGE.output_tokens);
    const seen = mock.seen.at(-1)!;
    assert.equal(seen.signatureValid, true);
    assert.equal(seen.path, `/model/${encodeURIComponent(PROFILE)}/invoke-with-response-stream`);
    assert.equal(seen.headers.accept, 'application/vnd.amazon.eventstream');
    const rec = await latest(before + 1);
    assert.equal(rec.streamed, true);
    assert.equal(rec.status, 'ok');
    assert.equal(rec.usage.input, BEDROCK_USAGE.input_tokens);
    assert.equal(rec.usage.output, BEDROCK_USAGE.output_tokens);
    assert.equal(rec.usage.cacheRead, 5);
    assert.equal(rec.priceKnown, true);
  });

  it('a streamed tool call reaches the client and the record', async () => {
    mock.scenario = 'tool';
    const before = (await tb.interceptions(0, dev.key)).length;
    const final = await client.messages
      .stream({
        model: 'claude-haiku-4-5-20251001',
        max_tokens: 64,
        tools: [
          { name: 'get_weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } },
        ],
        messages: [{ role: 'user', content: 'weather in Paris?' }],
      })
      .finalMessage();
    const call = final.content.find((b) => b.type === 'tool_use');
    assert.deepEqual(call && call.type === 'tool_use' ? call.input : null, { city: 'Paris' });
    assert.equal(final.stop_reason, 'tool_use');
    const rec = await latest(before + 1);
    assert.equal(rec.toolCalls.length, 1);
    assert.equal(rec.toolCalls[0]?.name, 'get_weather');
    assert.deepEqual(rec.toolCalls[0]?.input, { city: 'Paris' });
    assert.equal(rec.usage.output, BEDROCK_USAGE.output_tokens);
  });

  it('a non-streamed tool call is metered', async () => {
    mock.scenario = 'tool';
    const before = (await tb.interceptions(0, dev.key)).length;
    const msg = await client.messages.create({
      model: 'claude-haiku-4-5-20251001',
      max_tokens: 64,
      tools: [{ name: 'get_weather', input_schema: { type: 'object' } }],
      messages: [{ role: 'user', content: 'weather?' }],
    });
    assert.equal(msg.content[0]?.type, 'tool_use');
    const rec = await latest(before + 1);
    assert.deepEqual(rec.toolCalls[0]?.input, { city: 'Paris' });
  });

  it('ThrottlingException is a 429 in Anthropic’s error shape with retry-after', async () => {
    mock.scenario = 'throttle';
    const before = (await tb.interceptions(0, dev.key)).length;
    await assert.rejects(
      client.messages.create({ model: PROFILE, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
      (err: unknown) => {
        assert.ok(err instanceof RateLimitError, String(err));
        assert.equal(err.status, 429);
        assert.equal(err.headers?.get('retry-after'), '1');
        const body = err.error as { type: string; error: { type: string; message: string } };
        assert.equal(body.type, 'error');
        assert.equal(body.error.type, 'rate_limit_error');
        assert.match(body.error.message, /ThrottlingException: Too many requests/);
        return true;
      },
    );
    const rec = await latest(before + 1);
    assert.equal(rec.status, 'error');
    assert.equal(rec.httpStatus, 429);
  });

  it('an exception frame mid-stream becomes Anthropic’s error event', async () => {
    mock.scenario = 'stream-exception';
    const before = (await tb.interceptions(0, dev.key)).length;
    const res = await fetch(`${tb.url}/bedrock/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': dev.key,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify({
        model: PROFILE,
        max_tokens: 8,
        stream: true,
        messages: [{ role: 'user', content: 'x' }],
      }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const text = await res.text();
    assert.match(text, /^event: message_start\ndata: \{/);
    assert.match(
      text,
      /event: error\ndata: \{"type":"error","error":\{"type":"rate_limit_error","message":"throttlingException: Too many tokens/,
    );
    const rec = await latest(before + 1);
    assert.equal(rec.status, 'error');
    assert.equal(rec.error?.type, 'rate_limit_error');
  });

  it('a stream the provider ends with an exception after content is charged what it relayed, not message_start’s 1 token', async () => {
    mock.scenario = 'long-stream-exception';
    const before = (await tb.interceptions(0, dev.key)).length;
    const stream = client.messages.stream({
      model: PROFILE,
      max_tokens: 1000,
      messages: [{ role: 'user', content: 'Write a lot.' }],
    });
    let text = '';
    stream.on('text', (t) => {
      text += t;
    });
    await assert.rejects(stream.finalMessage());
    assert.match(text, /w39 $/, 'the client read all forty deltas');
    const rec = await latest(before + 1);
    assert.equal(rec.status, 'error');
    assert.equal(rec.usage.input, BEDROCK_USAGE.input_tokens, 'as message_start said');
    assert.ok(rec.usage.output >= 40, `output ${rec.usage.output} for 40 deltas relayed`);
    assert.equal(rec.usageEstimated, true);
  });

  it('picks up refreshed temporary credentials during traffic', async () => {
    const first = await client.messages.create({
      model: PROFILE,
      max_tokens: 8,
      messages: [{ role: 'user', content: 'a' }],
    });
    assert.equal(first.type, 'message');
    const next = {
      accessKeyId: 'ASIATESTBEDROCK00002',
      secretAccessKey: 'rotatedSecretKeyForTheBedrockRefreshTest00',
      sessionToken: 'IQoJb3JpZ2luX2VjERotatedSessionToken',
    };
    mock.trust(next);
    process.env.AWS_ACCESS_KEY_ID = next.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = next.secretAccessKey;
    process.env.AWS_SESSION_TOKEN = next.sessionToken;
    process.env.AWS_CREDENTIAL_EXPIRATION = new Date(Date.now() + 3_600_000).toISOString();
    const stream = client.messages.stream({
      model: PROFILE,
      max_tokens: 8,
      messages: [{ role: 'user', content: 'b' }],
    });
    assert.equal((await stream.finalMessage()).usage.output_tokens, BEDROCK_USAGE.output_tokens);
    const [a, b] = mock.seen.slice(-2);
    assert.equal(a?.accessKeyId, AWS_TEST_CREDENTIALS.accessKeyId);
    assert.equal(b?.accessKeyId, next.accessKeyId, 'the refreshed credentials signed the next request');
    assert.ok(a?.signatureValid && b?.signatureValid);
  });

  it('count_tokens goes to CountTokens for the foundation model, the invoke body in base64', async () => {
    const counted = await client.messages.countTokens(
      { model: 'claude-haiku-4-5-20251001', messages: [{ role: 'user', content: 'count me' }] },
      { headers: { 'anthropic-beta': 'context-1m-2025-08-07,claude-code-20250219' } },
    );
    assert.deepEqual(counted, { input_tokens: BEDROCK_COUNT });
    const seen = mock.seen.at(-1)!;
    assert.equal(seen.signatureValid, true);
    // The instance maps the name to the `us.` profile; CountTokens takes the foundation model only.
    assert.equal(
      seen.path,
      `/model/${encodeURIComponent('anthropic.claude-haiku-4-5-20251001-v1:0')}/count-tokens`,
    );
    const input = seen.body.input as { invokeModel: { body: string } };
    const invoke = JSON.parse(Buffer.from(input.invokeModel.body, 'base64').toString('utf8')) as Record<
      string,
      unknown
    >;
    assert.equal(invoke.anthropic_version, 'bedrock-2023-05-31');
    assert.equal(invoke.max_tokens, 1024, 'InvokeModel’s schema requires max_tokens');
    assert.deepEqual(invoke.messages, [{ role: 'user', content: 'count me' }]);
    assert.deepEqual(invoke.anthropic_beta, ['context-1m-2025-08-07']);
    assert.ok(!('model' in invoke));
  });

  it('a model named like an Object property (constructor, __proto__) is a model name, not a map entry', async () => {
    for (const model of ['constructor', '__proto__', 'toString']) {
      const res = await fetch(`${tb.url}/bedrock/v1/messages`, {
        method: 'POST',
        headers: {
          'x-api-key': dev.key,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
        },
        body: JSON.stringify({ model, max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
      });
      assert.equal(res.status, 200, `${model}: ${await res.text()}`);
      assert.equal(mock.seen.at(-1)!.path, `/model/${model}/invoke`);
    }
  });

  it('a request naming no model is a 400 in Anthropic’s shape, never sent', async () => {
    const sent = mock.seen.length;
    const res = await fetch(`${tb.url}/bedrock/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': dev.key, 'content-type': 'application/json' },
      body: JSON.stringify({ max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { type: string; error: { type: string } };
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal(mock.seen.length, sent);
  });

  it('prices Bedrock ids as the Anthropic model they name', () => {
    assert.equal(priceModelOf('us.anthropic.claude-sonnet-4-5-20250929-v1:0'), 'claude-sonnet-4-5-20250929');
    assert.equal(
      priceModelOf('global.anthropic.claude-haiku-4-5-20251001-v1:0'),
      'claude-haiku-4-5-20251001',
    );
    assert.equal(
      priceModelOf('apac.anthropic.claude-3-5-sonnet-20241022-v2:0'),
      'claude-3-5-sonnet-20241022',
    );
    assert.equal(priceModelOf('anthropic.claude-3-haiku-20240307-v1:0'), 'claude-3-haiku-20240307');
    assert.equal(
      priceModelOf(
        'arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-opus-4-1-20250805-v1:0',
      ),
      'claude-opus-4-1-20250805',
    );
  });
});

describe('AWS Bedrock without credentials', () => {
  let mock: BedrockMock;
  let tb: TestBridge;
  let restore: () => void;

  before(async () => {
    restore = awsEnv({
      AWS_CONFIG_FILE: NOWHERE,
      AWS_SHARED_CREDENTIALS_FILE: NOWHERE,
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    mock = await new BedrockMock().start();
    tb = await bridgeWith(mock.url);
  });

  after(async () => {
    await tb?.close();
    await mock?.close();
    restore();
  });

  it('answers 503 naming the instance and sends nothing upstream', async () => {
    const dev = await tb.addUser('nocreds@example.com');
    const client = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/bedrock`, maxRetries: 0 });
    await assert.rejects(
      client.messages.create({ model: PROFILE, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
      (err: unknown) => {
        assert.ok(err instanceof Anthropic.APIError);
        assert.equal(err.status, 503);
        assert.match(String((err.error as { error: { message: string } }).error.message), /"bedrock"/);
        return true;
      },
    );
    assert.equal(mock.seen.length, 0);
  });
});

const CLAUDE = path.join(
  path.dirname(createRequire(import.meta.url).resolve('@anthropic-ai/claude-code/package.json')),
  'bin',
  'claude.exe',
);

describe('the real claude CLI through /bedrock', function () {
  this.timeout(120_000);
  let mock: BedrockMock;
  let tb: TestBridge;
  let restore: () => void;

  before(async () => {
    restore = awsEnv({
      AWS_ACCESS_KEY_ID: AWS_TEST_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: AWS_TEST_CREDENTIALS.secretAccessKey,
      AWS_SESSION_TOKEN: AWS_TEST_CREDENTIALS.sessionToken,
      AWS_CONFIG_FILE: NOWHERE,
      AWS_SHARED_CREDENTIALS_FILE: NOWHERE,
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    mock = await new BedrockMock().start();
    tb = await bridgeWith(mock.url);
  });

  after(async () => {
    await tb?.close();
    await mock?.close();
    restore();
  });

  it('claude -p with ANTHROPIC_BASE_URL=<bridge>/bedrock prints the answer, metered as a stream', async () => {
    const dev = await tb.addUser('claude-bedrock@example.com');
    const home = await tempDir('aibridge-claude-home-');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: home,
      TMPDIR: home,
      ANTHROPIC_BASE_URL: `${tb.url}/bedrock`,
      ANTHROPIC_AUTH_TOKEN: dev.key,
      ANTHROPIC_MODEL: 'claude-haiku-4-5-20251001',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      DISABLE_AUTOUPDATER: '1',
      CI: '1',
    };
    const res = await run(CLAUDE, ['-p', 'Say hello to Bedrock'], env, home);
    assert.equal(res.code, 0, `claude failed: ${res.stderr}\n${res.stdout}`);
    assert.equal(res.stdout.trim(), BEDROCK_TEXT);
    assert.ok(mock.seen.length >= 1);
    assert.ok(mock.seen.every((r) => r.signatureValid && r.body.anthropic_version === 'bedrock-2023-05-31'));
    assert.ok(
      mock.seen.some((r) => r.path === `/model/${encodeURIComponent(PROFILE)}/invoke-with-response-stream`),
      `the mapped profile was streamed: ${mock.seen.map((r) => r.path).join(', ')}`,
    );
    const betas = mock.seen.flatMap((r) =>
      Array.isArray(r.body.anthropic_beta) ? r.body.anthropic_beta : [],
    );
    assert.ok(!betas.includes('claude-code-20250219'), 'first-party betas are filtered out');
    const recs = await tb.interceptions(mock.seen.length, dev.key);
    const mine = recs.find((r) => r.prompt === 'Say hello to Bedrock');
    assert.ok(mine, `no interception with the prompt: ${JSON.stringify(recs.map((r) => r.prompt))}`);
    assert.equal(mine.client, 'claude-code');
    assert.equal(mine.provider, 'bedrock');
    assert.equal(mine.streamed, true);
    assert.equal(mine.usage.input, BEDROCK_USAGE.input_tokens);
    assert.equal(mine.usage.output, BEDROCK_USAGE.output_tokens);
  });
});

describe('the Bedrock event stream as Anthropic SSE, unit', () => {
  const codec = new EventStreamCodec(toUtf8, fromUtf8);
  const str = (value: string) => ({ type: 'string' as const, value });
  const chunkFrame = (eventJson: string): Uint8Array =>
    codec.encode({
      headers: {
        ':event-type': str('chunk'),
        ':content-type': str('application/json'),
        ':message-type': str('event'),
      },
      body: fromUtf8(JSON.stringify({ bytes: Buffer.from(eventJson).toString('base64') })),
    });
  async function sseOf(chunks: Uint8Array[]): Promise<string> {
    let out = '';
    for await (const b of anthropicSse(
      (async function* () {
        yield* chunks;
      })(),
    ))
      out += b.toString('utf8');
    return out;
  }

  it('reads messages split anywhere, one byte at a time included', async () => {
    const start = JSON.stringify({ type: 'message_start', message: { id: 'm', usage: { input_tokens: 3 } } });
    const stop = JSON.stringify({ type: 'message_stop' });
    const bytes = Buffer.concat([chunkFrame(start), chunkFrame(stop)]);
    const expected = `event: message_start\ndata: ${start}\n\nevent: message_stop\ndata: ${stop}\n\n`;
    assert.equal(await sseOf([bytes]), expected);
    assert.equal(await sseOf([...bytes].map((b) => Uint8Array.of(b))), expected);
    assert.equal(await sseOf([bytes.subarray(0, 2), bytes.subarray(2, 40), bytes.subarray(40)]), expected);
  });

  it('refuses a message declaring more than 16 MiB at once, without holding what follows', async () => {
    const prelude = Buffer.alloc(12);
    prelude.writeUInt32BE(0x7ffffff0, 0);
    let pulled = 0;
    const out: string[] = [];
    for await (const b of anthropicSse(
      (async function* () {
        yield prelude;
        // A hostile upstream would go on sending: the reader must stop at the prelude.
        for (; pulled < 1000; pulled++) yield Buffer.alloc(65536);
      })(),
    ))
      out.push(b.toString('utf8'));
    assert.equal(pulled, 0, 'nothing after the prelude was read');
    assert.equal(out.length, 1);
    assert.match(out[0]!, /^event: error\ndata: .*over the 16777216 taken/);
  });

  it('a payload whose JSON has line breaks is one SSE data line', async () => {
    const pretty = JSON.stringify({ type: 'message_delta', usage: { output_tokens: 7 } }, null, 2);
    const sse = await sseOf([chunkFrame(pretty)]);
    assert.equal(sse, `event: message_delta\ndata: ${JSON.stringify(JSON.parse(pretty))}\n\n`);
  });
});

describe('bedrock instances and errors, unit', () => {
  it('validates the providers-file entry, naming the field', async () => {
    const dir = await tempDir();
    const cases: [unknown, RegExp][] = [
      [{ type: 'bedrock' }, /providers\.b\.region: expected an AWS region/],
      [{ type: 'bedrock', region: 'mars' }, /providers\.b\.region: expected an AWS region/],
      [
        { type: 'bedrock', region: 'us-east-1', apiKey: 'k' },
        /providers\.b\.apiKey: a bedrock instance signs/,
      ],
      [
        { type: 'bedrock', region: 'us-east-1', models: { m: 1 } },
        /providers\.b\.models\.m: expected a Bedrock model id/,
      ],
      [{ type: 'bedrock', region: 'us-east-1', project: 'p' }, /providers\.b\.project: unknown field/],
    ];
    for (const [entry, re] of cases) {
      const file = path.join(dir, `p-${Math.random().toString(36).slice(2)}.json`);
      await fs.writeFile(file, JSON.stringify({ providers: { b: entry } }));
      assert.throws(() => loadConfig({ 'data-dir': dir }, { AIBRIDGE_PROVIDERS_FILE: file }), re);
    }
  });

  it('maps AWS exceptions to the Anthropic client’s statuses', () => {
    const cases: [string, number, number, string][] = [
      ['ThrottlingException', 429, 429, 'rate_limit_error'],
      ['ValidationException', 400, 400, 'invalid_request_error'],
      ['ModelNotReadyException', 429, 529, 'overloaded_error'],
      ['ServiceUnavailableException', 503, 503, 'api_error'],
      ['ModelTimeoutException', 408, 504, 'api_error'],
      ['AccessDeniedException', 403, 403, 'permission_error'],
    ];
    for (const [name, aws, status, type] of cases) {
      const m = mapAwsError(name, aws, 'm');
      assert.equal(m.status, status, name);
      assert.deepEqual(m.body, { type: 'error', error: { type, message: `${name}: m` } });
      assert.equal(m.retryAfter !== undefined, status === 429, name);
    }
    // A signature error spells out the canonical request AWS expected, the session token in it:
    // the client gets the sentence before it.
    const signature = mapAwsError(
      'InvalidSignatureException',
      403,
      "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'POST\n/model/m/invoke\n\nhost:bedrock-runtime.us-east-1.amazonaws.com\nx-amz-security-token:IQoJb3JpZ2luX2VjSECRET\n\nhost;x-amz-security-token\nabc'\n\nThe String-to-Sign should have been\n'AWS4-HMAC-SHA256\n20261203T000000Z'\n",
    );
    // AWS's 403 for a refused credential is what a 401 is elsewhere: the bridge fails over and alerts.
    assert.equal(signature.status, 401);
    assert.deepEqual(signature.body, {
      type: 'error',
      error: {
        type: 'authentication_error',
        message:
          'InvalidSignatureException: The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
      },
    });
    // An exception name AWS never sends, such as one of Object's own properties, is no table entry.
    assert.equal(mapAwsError('constructor', 418, 'm').status, 418);
    assert.deepEqual(
      awsErrorOf(
        'ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/',
        Buffer.from('{"message":"bad"}'),
      ),
      { name: 'ValidationException', message: 'bad' },
    );
    assert.deepEqual(
      awsErrorOf(undefined, Buffer.from('{"__type":"com.amazon.coral#ThrottlingException","Message":"x"}')),
      {
        name: 'ThrottlingException',
        message: 'x',
      },
    );
  });
});
