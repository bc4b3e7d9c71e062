import assert from 'node:assert/strict';
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
  errorShape: (body, code) => {
    const e = (body as { error: Record<string, unknown> }).error;
    assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'status']);
    assert.equal(e.code, 400);
    assert.equal(e.status, 'INVALID_ARGUMENT');
    assert.match(String(e.message), new RegExp(`\\(${code}\\)$`));
  },
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
