import assert from 'node:assert/strict';
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { AnthropicMock, DEFAULT_USAGE, MOCK_TEXT, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';

const expectedUsage = {
  input: DEFAULT_USAGE.input_tokens,
  output: DEFAULT_USAGE.output_tokens,
  cacheRead: DEFAULT_USAGE.cache_read_input_tokens,
  cacheWrite: DEFAULT_USAGE.cache_creation_input_tokens,
  reasoning: 0,
};

describe('Anthropic SDK through the bridge', () => {
  let mock: AnthropicMock;
  let tb: TestBridge;
  let dev: { key: string; user: { id: string; email: string } };
  let client: Anthropic;

  before(async () => {
    mock = await new AnthropicMock().start();
    tb = await startBridge(mock.url);
    dev = await tb.addUser('dev@example.com', { team: 'platform' });
    client = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  it('creates a message; the upstream sees the organisation key, and the record has exact usage', async () => {
    const before = mock.messageRequests().length;
    const msg = await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'What is the capital of France?' }],
    });
    assert.equal(msg.content[0]?.type, 'text');
    assert.equal((msg.content[0] as { text: string }).text, MOCK_TEXT);
    const seen = mock.messageRequests()[before]!;
    assert.equal(seen.headers['x-api-key'], UPSTREAM_KEY);
    assert.equal(seen.headers.authorization, undefined, 'the bridge key must not reach upstream');
    assert.ok(!JSON.stringify(seen.headers).includes(dev.key));

    const [rec] = await tb.interceptions(1, dev.key);
    assert.ok(rec);
    assert.equal(rec.userId, dev.user.id);
    assert.equal(rec.userEmail, 'dev@example.com');
    assert.equal(rec.team, 'platform');
    assert.equal(rec.provider, 'anthropic');
    assert.equal(rec.api, 'messages');
    assert.equal(rec.model, 'claude-sonnet-4-6');
    assert.equal(rec.client, 'anthropic-sdk-js');
    assert.equal(rec.streamed, false);
    assert.equal(rec.status, 'ok');
    assert.equal(rec.httpStatus, 200);
    assert.deepEqual(rec.usage, expectedUsage);
    assert.equal(rec.prompt, 'What is the capital of France?');
    assert.deepEqual(rec.toolCalls, []);
    assert.equal(rec.error, null);
    assert.match(rec.upstreamRequestId ?? '', /^req_/);
    assert.ok(Date.parse(rec.startedAt) <= Date.parse(rec.endedAt));
  });

  it('streams a message and records usage read from message_start and message_delta', async () => {
    const n = (await tb.interceptions(0, dev.key)).length;
    const stream = client.messages.stream({
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'Stream please' }],
      metadata: { user_id: 'session-from-metadata' },
    });
    const texts: string[] = [];
    stream.on('text', (t) => texts.push(t));
    const final = await stream.finalMessage();
    assert.equal(texts.join(''), MOCK_TEXT);
    assert.equal(final.usage.output_tokens, DEFAULT_USAGE.output_tokens);
    const recs = await tb.interceptions(n + 1, dev.key);
    const rec = recs[0]!;
    assert.equal(rec.streamed, true);
    assert.equal(rec.status, 'ok');
    assert.deepEqual(rec.usage, expectedUsage);
    assert.equal(rec.prompt, 'Stream please');
    assert.equal(rec.sessionId, 'session-from-metadata');
  });

  it('takes cumulative usage from message_delta when the API sends it', async () => {
    const usage = {
      input_tokens: 3,
      output_tokens: 99,
      cache_read_input_tokens: 0,
      cache_creation_input_tokens: 1,
    };
    mock.next({ kind: 'text', usage: { ...usage, output_tokens: 99 }, cumulativeDelta: true });
    const n = (await tb.interceptions(0, dev.key)).length;
    await client.messages
      .stream({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] })
      .finalMessage();
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    assert.deepEqual(rec.usage, { input: 3, output: 99, cacheRead: 0, cacheWrite: 1, reasoning: 0 });
  });

  it('records the thinking part of the output (output_tokens_details.thinking_tokens) as reasoning, streamed and not', async () => {
    const usage = {
      input_tokens: 30,
      output_tokens: 52,
      cache_read_input_tokens: 0,
      cache_creation_input_tokens: 0,
      output_tokens_details: { thinking_tokens: 40 },
    };
    const n = (await tb.interceptions(0, dev.key)).length;
    const body = {
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      messages: [{ role: 'user' as const, content: 'x' }],
    };
    mock.next({ kind: 'text', usage });
    const whole = await client.messages.create(body);
    assert.equal(whole.usage.output_tokens_details?.thinking_tokens, 40, 'what the SDK reports');
    mock.next({ kind: 'text', usage });
    await client.messages.stream(body).finalMessage();
    for (const rec of (await tb.interceptions(n + 2, dev.key)).slice(0, 2))
      assert.deepEqual(rec.usage, { input: 30, output: 52, cacheRead: 0, cacheWrite: 0, reasoning: 40 });
  });

  it('keeps message_start’s input and cache counts when message_delta reports them as null', async () => {
    // MessageDeltaUsage's input and cache counts are `number | null`; the SDK keeps the earlier
    // value on null, and so must the record (they were recorded as 0: a free prompt).
    const usage = {
      input_tokens: 40,
      output_tokens: 12,
      cache_read_input_tokens: 3000,
      cache_creation_input_tokens: 500,
    };
    mock.next({ kind: 'text', usage, nullDelta: true });
    const n = (await tb.interceptions(0, dev.key)).length;
    const msg = await client.messages
      .stream({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] })
      .finalMessage();
    assert.equal(msg.usage.input_tokens, 40, 'what the SDK reports');
    assert.equal(msg.usage.cache_read_input_tokens, 3000);
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    assert.deepEqual(rec.usage, { input: 40, output: 12, cacheRead: 3000, cacheWrite: 500, reasoning: 0 });
  });

  it('records tool calls, streamed and not, with their parsed input', async () => {
    const input = { command: 'ls -la', cwd: '/tmp' };
    mock.next(
      { kind: 'tool', name: 'Bash', input, text: 'Let me look.' },
      { kind: 'tool', name: 'mcp__github__create_issue', input: { title: 'x' } },
    );
    const n = (await tb.interceptions(0, dev.key)).length;
    const tools = [
      { name: 'Bash', description: 'run', input_schema: { type: 'object' as const, properties: {} } },
    ];
    const streamed = await client.messages
      .stream({
        model: 'claude-sonnet-4-6',
        max_tokens: 100,
        tools,
        messages: [{ role: 'user', content: 'list files' }],
      })
      .finalMessage();
    const toolBlock = streamed.content.find((b) => b.type === 'tool_use');
    assert.deepEqual(toolBlock && 'input' in toolBlock ? toolBlock.input : undefined, input);
    const plain = await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      tools,
      messages: [{ role: 'user', content: 'file an issue' }],
    });
    assert.equal(plain.stop_reason, 'tool_use');

    const [second, first] = await tb.interceptions(n + 2, dev.key);
    assert.equal(first!.toolCalls.length, 1);
    assert.equal(first!.toolCalls[0]!.name, 'Bash');
    assert.equal(first!.toolCalls[0]!.server, null);
    assert.equal(first!.toolCalls[0]!.injected, false);
    assert.deepEqual(first!.toolCalls[0]!.input, input);
    assert.equal(first!.toolCalls[0]!.id, toolBlock && 'id' in toolBlock ? toolBlock.id : '');
    assert.ok(Date.parse(first!.toolCalls[0]!.at) >= Date.parse(first!.startedAt));
    assert.equal(second!.toolCalls[0]!.name, 'mcp__github__create_issue');
    assert.equal(second!.toolCalls[0]!.server, 'github');
    assert.deepEqual(second!.toolCalls[0]!.input, { title: 'x' });
  });

  it('counts tokens and lists models through the pass-through, without recording them as interceptions', async () => {
    const n = (await tb.interceptions(0)).length;
    const count = await client.messages.countTokens({
      model: 'claude-sonnet-4-6',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(count.input_tokens, 42);
    // The model list is the bridge's own answer now (test/server/model-discovery.test.ts).
    const models = await client.models.retrieve('claude-sonnet-4-6');
    assert.equal(models.id, 'claude-sonnet-4-6');
    // A positive signal instead of a sleep: a message sent after them is recorded, and it is the only new
    // record (records are built as responses end, so theirs would have come first).
    await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'after the pass-through' }],
    });
    const after = await tb.interceptions(n + 1);
    assert.equal(after.length, n + 1);
    assert.equal(after[0]!.api, 'messages');
  });

  it('refuses fast mode (speed: "fast", billed at a multiple of the prices it knows) in Anthropic’s shape; standard passes', async () => {
    const before = mock.requests.length;
    await assert.rejects(
      client.beta.messages.create({
        model: 'claude-opus-4-6',
        max_tokens: 10,
        speed: 'fast',
        betas: ['fast-mode-2026-02-01'],
        messages: [{ role: 'user', content: 'x' }],
      }),
      (err: unknown) => {
        assert.ok(err instanceof APIError, String(err));
        assert.equal(err.status, 400);
        assert.equal((err.error as { error: { type: string } }).error.type, 'invalid_request_error');
        assert.match(err.message, /speed/);
        return true;
      },
    );
    assert.equal(mock.requests.length, before, 'nothing reached the provider');
    const ok = await client.messages.create({
      model: 'claude-opus-4-6',
      max_tokens: 10,
      speed: 'standard',
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.equal(ok.type, 'message');
  });

  it('refuses inference_geo other than global (one region is billed above the prices it knows) in Anthropic’s shape; global passes', async () => {
    const before = mock.requests.length;
    await assert.rejects(
      client.messages.create({
        model: 'claude-opus-4-6',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'x' }],
        inference_geo: 'us',
      }),
      (err: unknown) => {
        assert.ok(err instanceof APIError, String(err));
        assert.equal(err.status, 400);
        assert.equal((err.error as { error: { type: string } }).error.type, 'invalid_request_error');
        assert.match(err.message, /inference_geo/);
        return true;
      },
    );
    assert.equal(mock.requests.length, before, 'nothing reached the provider');
    const ok = await client.messages.create({
      model: 'claude-opus-4-6',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'x' }],
      inference_geo: 'global',
    });
    assert.equal(ok.type, 'message');
  });

  it('passes upstream errors through in Anthropic shape with their status and headers, and records them', async () => {
    mock.next({
      kind: 'error',
      status: 529,
      type: 'overloaded_error',
      message: 'Overloaded',
      headers: { 'retry-after': '7' },
    });
    const n = (await tb.interceptions(0, dev.key)).length;
    await assert.rejects(
      client.messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'x' }],
      }),
      (err: unknown) => {
        assert.ok(err instanceof APIError);
        assert.equal(err.status, 529);
        assert.equal(err.headers?.get('retry-after'), '7');
        assert.equal((err.error as { error: { type: string } }).error.type, 'overloaded_error');
        return true;
      },
    );
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    assert.equal(rec.status, 'error');
    assert.equal(rec.httpStatus, 529);
    assert.deepEqual(rec.error, { type: 'overloaded_error', message: 'Overloaded' });
  });

  it('relays a mid-stream error event to the SDK and records it', async () => {
    mock.next({ kind: 'mid-stream-error' });
    const n = (await tb.interceptions(0, dev.key)).length;
    await assert.rejects(
      client.messages
        .stream({ model: 'claude-sonnet-4-6', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] })
        .finalMessage(),
      /Overloaded|overloaded/,
    );
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    assert.equal(rec.status, 'error');
    assert.equal(rec.streamed, true);
    assert.deepEqual(rec.error, { type: 'overloaded_error', message: 'Overloaded' });
    assert.equal(rec.usage.input, DEFAULT_USAGE.input_tokens);
  });
});
