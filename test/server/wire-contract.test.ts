import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tempDirSync } from '../helpers/temp-dirs';
import { testServiceAccount } from '../helpers/vertex-mock';
import { type WireCase, wireContract } from '../providers/wire-contract';

const MSG = { model: 'claude-sonnet-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] };
const CHAT = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] };
// The client asks for usage itself, so the bridge changes nothing and the stream must pass byte for byte.
const CHAT_STREAM = { ...CHAT, stream: true, stream_options: { include_usage: true } };

function openaiShape(body: unknown, code: string): void {
  const e = (body as { error: Record<string, unknown> }).error;
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(e.code, code);
}

function anthropicShape(body: unknown): void {
  const b = body as { type: string; error: { type: string; message: string } };
  assert.equal(b.type, 'error');
  assert.equal(b.error.type, 'invalid_request_error');
  assert.equal(typeof b.error.message, 'string');
}

const chatCases = (model: string): WireCase[] => [
  {
    title: 'meters a streamed tool call with usage, passing the stream byte for byte',
    fixture: 'chat-stream-tool.sse',
    path: '/chat/completions',
    body: { ...CHAT_STREAM, model },
    expect: {
      status: 'ok',
      usage: { input: 20, cacheRead: 64, output: 17 },
      toolCalls: ['get_weather'],
      bytesExact: true,
    },
  },
  {
    title: 'meters a JSON answer',
    fixture: 'chat-json.json',
    path: '/chat/completions',
    body: { ...CHAT, model },
    expect: { status: 'ok', usage: { input: 19, output: 10 }, toolCalls: [], bytesExact: true },
  },
  {
    title: 'relays a 429 as sent and records it',
    fixture: 'chat-error-429.json',
    status: 429,
    path: '/chat/completions',
    body: { ...CHAT, model },
    expect: { status: 'error', errorType: 'tokens', bytesExact: true },
  },
];

wireContract({
  type: 'anthropic',
  entry: (upstream) => ({ type: 'anthropic', baseUrl: upstream, apiKey: 'k' }),
  prefix: '/wire',
  headers: { 'anthropic-version': '2023-06-01' },
  errorShape: anthropicShape,
  cases: [
    {
      title: 'meters a streamed tool call with cache usage, passing the stream byte for byte',
      fixture: 'messages-stream-tool.sse',
      path: '/v1/messages',
      body: { ...MSG, stream: true },
      expect: {
        status: 'ok',
        usage: { input: 472, cacheRead: 1200, output: 89 },
        toolCalls: ['get_weather'],
        bytesExact: true,
      },
    },
    {
      title: 'meters a JSON answer',
      fixture: 'messages-json.json',
      path: '/v1/messages',
      body: MSG,
      expect: {
        status: 'ok',
        usage: { input: 12, cacheWrite: 30, output: 6 },
        toolCalls: [],
        bytesExact: true,
      },
    },
    {
      title: 'relays an overloaded error as sent and records it',
      fixture: 'messages-error-overloaded.json',
      status: 529,
      path: '/v1/messages',
      body: MSG,
      expect: { status: 'error', errorType: 'overloaded_error', bytesExact: true },
    },
    {
      title: 'relays a mid-stream error and records it',
      fixture: 'messages-midstream-error.sse',
      path: '/v1/messages',
      body: { ...MSG, stream: true },
      expect: { status: 'error', errorType: 'overloaded_error', usage: { input: 20 }, bytesExact: true },
    },
  ],
});

wireContract({
  type: 'openai',
  entry: (upstream) => ({ type: 'openai', baseUrl: upstream, apiKey: 'k' }),
  prefix: '/wire/v1',
  errorShape: openaiShape,
  cases: [
    ...chatCases('gpt-4o'),
    {
      title: 'meters a streamed response (Responses API)',
      fixture: 'responses-stream.sse',
      path: '/responses',
      body: { model: 'gpt-4.1', input: 'hi', stream: true },
      expect: {
        status: 'ok',
        usage: { input: 36, output: 87, reasoning: 64 },
        toolCalls: [],
        bytesExact: true,
      },
    },
    {
      title: 'relays a mid-stream error event (Responses API) and records it',
      fixture: 'responses-midstream-error.sse',
      path: '/responses',
      body: { model: 'gpt-4.1', input: 'hi', stream: true },
      expect: { status: 'error', errorType: 'server_error', bytesExact: true },
    },
  ],
});

wireContract({
  type: 'openai-compatible',
  entry: (upstream) => ({ type: 'openai-compatible', baseUrl: upstream, prices: 'free' }),
  prefix: '/wire/v1',
  errorShape: openaiShape,
  cases: [
    {
      title: 'meters a streamed tool call (Ollama’s one-chunk calls) with usage, byte for byte',
      fixture: 'chat-stream-tool.sse',
      path: '/chat/completions',
      body: { ...CHAT_STREAM, model: 'llama3.2' },
      expect: {
        status: 'ok',
        usage: { input: 160, output: 18 },
        toolCalls: ['get_weather'],
        bytesExact: true,
      },
    },
    {
      title: 'meters a JSON answer',
      fixture: 'chat-json.json',
      path: '/chat/completions',
      body: { ...CHAT, model: 'llama3.2' },
      expect: { status: 'ok', usage: { input: 26, output: 8 }, bytesExact: true },
    },
    {
      title: 'relays a model-not-found error as sent',
      fixture: 'chat-error-404.json',
      status: 404,
      path: '/chat/completions',
      body: { ...CHAT, model: 'llama9' },
      expect: { status: 'error', errorType: 'api_error', bytesExact: true },
    },
    {
      title: 'relays a mid-stream error chunk and records it',
      fixture: 'chat-midstream-error.sse',
      path: '/chat/completions',
      body: { ...CHAT_STREAM, model: 'llama3.2' },
      expect: { status: 'error', errorType: 'api_error', bytesExact: true },
    },
  ],
});

wireContract({
  type: 'azure-openai',
  entry: (upstream) => ({ type: 'azure-openai', baseUrl: `${upstream}/openai/v1`, apiKey: 'k' }),
  prefix: '/wire/v1',
  errorShape: openaiShape,
  cases: [
    ...chatCases('gpt-4o').map((c) =>
      c.fixture === 'chat-json.json'
        ? { ...c, expect: { ...c.expect, usage: { input: 19, cacheRead: 1000, output: 10 } } }
        : c.fixture === 'chat-error-429.json'
          ? { ...c, expect: { ...c.expect, errorType: '429' } }
          : c,
    ),
    {
      title: 'maps a content-filter refusal to OpenAI’s error shape and records it',
      fixture: 'chat-error-content-filter.json',
      status: 400,
      path: '/chat/completions',
      body: CHAT,
      expect: {
        status: 'error',
        errorType: 'content_filter',
        bytesExact: false,
        clientBody: (b) => {
          openaiShape(b, 'content_filter');
          assert.equal((b as { error: { param: string } }).error.param, 'prompt');
        },
      },
    },
  ],
});

const GEMINI = { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] };

wireContract({
  type: 'gemini',
  entry: (upstream) => ({ type: 'gemini', baseUrl: upstream, apiKey: 'k' }),
  prefix: '/wire',
  errorShape: googleShape,
  cases: [
    {
      title: 'meters a streamed function call with cached and thinking tokens, byte for byte',
      fixture: 'stream-tool.sse',
      path: '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
      body: GEMINI,
      expect: {
        status: 'ok',
        usage: { input: 402, cacheRead: 2048, output: 86, reasoning: 65 },
        toolCalls: ['get_weather'],
        bytesExact: true,
      },
    },
    {
      title: 'meters a JSON answer, tool-use prompt tokens counted as input',
      fixture: 'generate-json.json',
      path: '/v1beta/models/gemini-2.5-pro:generateContent',
      body: GEMINI,
      expect: {
        status: 'ok',
        usage: { input: 11, output: 30, reasoning: 21 },
        toolCalls: [],
        bytesExact: true,
      },
    },
    {
      title: 'relays a quota error as sent and records its status',
      fixture: 'error-429.json',
      status: 429,
      path: '/v1beta/models/gemini-2.5-pro:generateContent',
      body: GEMINI,
      expect: { status: 'error', errorType: 'RESOURCE_EXHAUSTED', bytesExact: true },
    },
    {
      title: 'relays a mid-stream error chunk and records it',
      fixture: 'midstream-error.sse',
      path: '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
      body: GEMINI,
      expect: { status: 'error', errorType: 'UNAVAILABLE', usage: { input: 5 }, bytesExact: true },
    },
  ],
});

/** Anthropic's error body with `type` and a message matching `message`. */
function anthropicError(type: string, message: RegExp): (body: unknown) => void {
  return (body) => {
    const b = body as { type: string; error: { type: string; message: string } };
    assert.equal(b.type, 'error');
    assert.equal(b.error.type, type);
    assert.match(b.error.message, message);
  };
}

describe('bedrock, signed with temporary credentials from the environment', () => {
  const vars = [
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AWS_SESSION_TOKEN',
    'AWS_EC2_METADATA_DISABLED',
  ];
  const saved = Object.fromEntries(vars.map((k) => [k, process.env[k]]));
  before(() => {
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: 'ASIAWIRECONTRACT0001',
      AWS_SECRET_ACCESS_KEY: 'wireContractSecretAccessKey0000000000000',
      AWS_SESSION_TOKEN: 'IQoJb3JpZ2luX2VjEWireContract',
      AWS_EC2_METADATA_DISABLED: 'true',
    });
  });
  after(() => {
    for (const k of vars) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  // Bedrock's requests are signed, so the fixture server picks the answer by the suite's `next`,
  // not a header; the event stream is re-framed as Anthropic SSE, which must come out exactly.
  wireContract({
    type: 'bedrock',
    entry: (upstream) => ({ type: 'bedrock', region: 'us-east-1', baseUrl: upstream }),
    prefix: '/wire',
    headers: { 'anthropic-version': '2023-06-01' },
    errorShape: anthropicShape,
    cases: [
      {
        title: 're-frames a streamed tool call as Anthropic SSE, metered with cache usage',
        fixture: 'invoke-stream-tool.eventstream',
        path: '/v1/messages',
        body: { ...MSG, stream: true },
        expect: {
          status: 'ok',
          usage: { input: 388, cacheRead: 2048, output: 61 },
          toolCalls: ['get_weather'],
          bytesExact: false,
          clientFixture: 'invoke-stream-tool.sse',
        },
      },
      {
        title: 'meters a JSON answer, passed as sent',
        fixture: 'invoke-json.json',
        path: '/v1/messages',
        body: MSG,
        expect: {
          status: 'ok',
          usage: { input: 17, cacheWrite: 40, output: 9 },
          toolCalls: [],
          bytesExact: true,
        },
      },
      {
        title: 'maps ThrottlingException to a 429 in Anthropic’s shape',
        fixture: 'invoke-error-throttling.json',
        status: 429,
        path: '/v1/messages',
        body: MSG,
        expect: {
          status: 'error',
          errorType: 'rate_limit_error',
          bytesExact: false,
          clientBody: anthropicError('rate_limit_error', /^ThrottlingException: Too many requests/),
        },
      },
      {
        title: 'maps ValidationException to a 400 in Anthropic’s shape',
        fixture: 'invoke-error-validation.json',
        status: 400,
        path: '/v1/messages',
        body: MSG,
        expect: {
          status: 'error',
          errorType: 'invalid_request_error',
          bytesExact: false,
          clientBody: anthropicError('invalid_request_error', /^ValidationException: messages\.0\.content/),
        },
      },
      {
        title: 'turns an exception frame mid-stream into Anthropic’s error event',
        fixture: 'invoke-stream-exception.eventstream',
        path: '/v1/messages',
        body: { ...MSG, stream: true },
        expect: {
          status: 'error',
          errorType: 'rate_limit_error',
          usage: { input: 14 },
          bytesExact: false,
          clientFixture: 'invoke-stream-exception.sse',
        },
      },
    ],
  });
});

/** A service-account key whose token_uri is the fixture server's token endpoint (written when the entry is made). */
function vertexKeyFile(upstream: string): string {
  const file = path.join(tempDirSync('aibridge-wire-vertex-'), 'service-account.json');
  fs.writeFileSync(file, JSON.stringify(testServiceAccount().json(`${upstream}/token`)), { mode: 0o600 });
  return file;
}

// Vertex relays Claude's own JSON and SSE, so they pass byte for byte; Google-shaped refusals are mapped.
wireContract({
  type: 'vertex-anthropic',
  entry: (upstream) => ({
    type: 'vertex-anthropic',
    project: 'wire-project',
    region: 'us-east5',
    baseUrl: upstream,
    credentialsFile: vertexKeyFile(upstream),
  }),
  prefix: '/wire',
  headers: { 'anthropic-version': '2023-06-01' },
  errorShape: anthropicShape,
  cases: [
    {
      title: 'meters a streamed tool call with cache usage, passing the stream byte for byte',
      fixture: 'stream-tool.sse',
      path: '/v1/messages',
      body: { ...MSG, stream: true },
      expect: {
        status: 'ok',
        usage: { input: 472, cacheRead: 1200, output: 89 },
        toolCalls: ['get_weather'],
        bytesExact: true,
      },
    },
    {
      title: 'meters a JSON answer',
      fixture: 'rawpredict-json.json',
      path: '/v1/messages',
      body: MSG,
      expect: {
        status: 'ok',
        usage: { input: 12, cacheWrite: 30, output: 6 },
        toolCalls: [],
        bytesExact: true,
      },
    },
    {
      title: 'maps RESOURCE_EXHAUSTED to a 429 in Anthropic’s shape',
      fixture: 'error-429-resource-exhausted.json',
      status: 429,
      path: '/v1/messages',
      body: MSG,
      expect: {
        status: 'error',
        errorType: 'rate_limit_error',
        bytesExact: false,
        clientBody: anthropicError('rate_limit_error', /^RESOURCE_EXHAUSTED: Quota exceeded/),
      },
    },
    {
      title: 'relays Claude’s own error as sent',
      fixture: 'error-400-invalid.json',
      status: 400,
      path: '/v1/messages',
      body: MSG,
      expect: { status: 'error', errorType: 'invalid_request_error', bytesExact: true },
    },
    {
      title: 'relays a mid-stream error event byte for byte',
      fixture: 'stream-midstream-error.sse',
      path: '/v1/messages',
      body: { ...MSG, stream: true },
      expect: { status: 'error', errorType: 'overloaded_error', usage: { input: 20 }, bytesExact: true },
    },
  ],
});

/** Google's error shape with the bridge's code at the end of the message (the gemini family's). */
function googleShape(body: unknown, code: string): void {
  const e = (body as { error: Record<string, unknown> }).error;
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'status']);
  assert.equal(e.code, 400);
  assert.equal(e.status, 'INVALID_ARGUMENT');
  assert.match(String(e.message), new RegExp(`\\(${code}\\)$`));
}

const VERTEX_GEMINI = '/v1beta1/projects/client-project/locations/us-central1/publishers/google/models';

// Vertex answers Gemini's own JSON and SSE, so they pass byte for byte in both client forms; only a
// streaming endpoint's array-wrapped error is unwrapped.
wireContract({
  type: 'vertex-gemini',
  entry: (upstream) => ({
    type: 'vertex-gemini',
    project: 'wire-project',
    region: 'us-central1',
    baseUrl: upstream,
    credentialsFile: vertexKeyFile(upstream),
  }),
  prefix: '/wire',
  errorShape: googleShape,
  cases: [
    {
      title:
        'meters a streamed function call with cached and thinking tokens (Gemini API form), byte for byte',
      fixture: 'stream-tool.sse',
      path: '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
      body: GEMINI,
      expect: {
        status: 'ok',
        usage: { input: 156, cacheRead: 256, output: 82, reasoning: 64 },
        toolCalls: ['get_weather'],
        bytesExact: true,
      },
    },
    {
      title: 'meters a streamed answer (Vertex form), byte for byte',
      fixture: 'stream-text.sse',
      path: `${VERTEX_GEMINI}/gemini-2.5-pro:streamGenerateContent?alt=sse`,
      body: GEMINI,
      expect: {
        status: 'ok',
        usage: { input: 291, cacheRead: 1024, output: 137, reasoning: 96 },
        toolCalls: [],
        bytesExact: true,
      },
    },
    {
      title: 'meters a JSON answer with a function call (Vertex form)',
      fixture: 'generate-tool.json',
      path: `${VERTEX_GEMINI}/gemini-2.5-flash:generateContent`,
      body: GEMINI,
      expect: {
        status: 'ok',
        usage: { input: 58, output: 79, reasoning: 64 },
        toolCalls: ['get_weather'],
        bytesExact: true,
      },
    },
    {
      title: 'relays RESOURCE_EXHAUSTED as sent and records it',
      fixture: 'error-429-resource-exhausted.json',
      status: 429,
      path: '/v1beta/models/gemini-2.5-pro:generateContent',
      body: GEMINI,
      expect: { status: 'error', errorType: 'RESOURCE_EXHAUSTED', bytesExact: true },
    },
    {
      title: 'unwraps an array-wrapped NOT_FOUND to Google’s object shape',
      fixture: 'error-404-array.json',
      status: 404,
      path: `${VERTEX_GEMINI}/gemini-9-ultra:streamGenerateContent?alt=sse`,
      body: GEMINI,
      expect: {
        status: 'error',
        errorType: 'NOT_FOUND',
        bytesExact: false,
        clientBody: (b) => {
          const e = (b as { error: { code: number; status: string; message: string } }).error;
          assert.equal(e.code, 404);
          assert.equal(e.status, 'NOT_FOUND');
          assert.match(e.message, /^Publisher Model `projects\/wire-project/);
        },
      },
    },
    {
      title: 'relays a mid-stream error chunk and records it',
      fixture: 'stream-midstream-error.sse',
      path: '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
      body: GEMINI,
      expect: { status: 'error', errorType: 'UNAVAILABLE', usage: { input: 7 }, bytesExact: true },
    },
  ],
});
