import assert from 'node:assert/strict';
import type { Interception } from '../../shared/interception';
import { AnthropicMock, MOCK_TEXT } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { OPENAI_TEXT, OpenAIMock } from '../helpers/openai-mock';

interface Api {
  name: string;
  path: string;
  /** The first turn's body. */
  first(stream: boolean): Record<string, unknown>;
  /** The second turn: the first plus the model's call and the client's result. */
  second(stream: boolean, callId: string, result: string): Record<string, unknown>;
  queueTool(): void;
  text: string;
  /** Whether the API can say a tool result is an error. */
  errors: boolean;
}

describe('capture levels and tool results through a three-turn exchange', function () {
  this.timeout(60_000);
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    tb = await startBridge(anthropic.url, { AIBRIDGE_OPENAI_BASE_URL: openai.url });
    await tb.api('PUT', '/api/v1/teams/forensics/capture', tb.adminKey, { level: 'full' });
    await tb.api('PUT', '/api/v1/teams/private/capture', tb.adminKey, { level: 'none' });
  });
  after(async () => {
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  const APIS: Api[] = [
    {
      name: 'Anthropic Messages',
      path: '/anthropic/v1/messages',
      first: (stream) => ({
        model: 'claude-sonnet-4-5',
        max_tokens: 64,
        stream,
        messages: [{ role: 'user', content: 'run ls please' }],
      }),
      second: (stream, id, result) => ({
        model: 'claude-sonnet-4-5',
        max_tokens: 64,
        stream,
        messages: [
          { role: 'user', content: 'run ls please' },
          { role: 'assistant', content: [{ type: 'tool_use', id, name: 'Bash', input: { command: 'ls' } }] },
          {
            role: 'user',
            content: [
              {
                type: 'tool_result',
                tool_use_id: id,
                is_error: true,
                content: [{ type: 'text', text: result }],
              },
            ],
          },
        ],
      }),
      queueTool: () => anthropic.next({ kind: 'tool', name: 'Bash', input: { command: 'ls' } }),
      text: MOCK_TEXT,
      errors: true,
    },
    {
      name: 'OpenAI Chat Completions',
      path: '/openai/v1/chat/completions',
      first: (stream) => ({
        model: 'gpt-4o',
        stream,
        messages: [{ role: 'user', content: 'run ls please' }],
      }),
      second: (stream, id, result) => ({
        model: 'gpt-4o',
        stream,
        messages: [
          { role: 'user', content: 'run ls please' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id, type: 'function', function: { name: 'Bash', arguments: '{"command":"ls"}' } }],
          },
          { role: 'tool', tool_call_id: id, content: result },
        ],
      }),
      queueTool: () => openai.next({ kind: 'tool', name: 'Bash', arguments: { command: 'ls' } }),
      text: OPENAI_TEXT,
      errors: false,
    },
    {
      name: 'OpenAI Responses',
      path: '/openai/v1/responses',
      first: (stream) => ({ model: 'gpt-5', stream, input: [{ role: 'user', content: 'run ls please' }] }),
      second: (stream, id, result) => ({
        model: 'gpt-5',
        stream,
        input: [
          { role: 'user', content: 'run ls please' },
          { type: 'function_call', call_id: id, name: 'Bash', arguments: '{"command":"ls"}' },
          { type: 'function_call_output', call_id: id, output: result },
        ],
      }),
      queueTool: () => openai.next({ kind: 'tool', name: 'Bash', arguments: { command: 'ls' } }),
      text: OPENAI_TEXT,
      errors: false,
    },
  ];

  async function post(key: string, path: string, body: unknown): Promise<string> {
    const res = await fetch(tb.url + path, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify(body),
    });
    assert.equal(res.status, 200);
    return res.text();
  }

  for (const api of APIS) {
    for (const stream of [false, true]) {
      it(`${api.name}${stream ? ', streamed' : ''}: full capture links the call to its result`, async () => {
        const dev = await tb.addUser(`full-${api.name.replace(/\W/g, '')}-${stream}@example.com`, {
          team: 'forensics',
        });
        api.queueTool();
        await post(dev.key, api.path, api.first(stream));
        const [first] = await tb.interceptions(1, dev.key);
        const call = first!.toolCalls[0]!;
        assert.equal(call.name, 'Bash');
        assert.equal(first!.capture, 'full');
        const result = 'total 0\nsecret sk-ant-api03-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb here';
        await post(dev.key, api.path, api.second(stream, call.id, result));
        const [second] = await tb.interceptions(2, dev.key);
        assert.deepEqual(
          second!.toolResults!.map((r) => [r.callId, r.isError, r.contentLength]),
          [[call.id, api.errors, result.length]],
        );
        assert.match(second!.toolResults![0]!.content!, /^total 0\nsecret \[REDACTED:anthropic_key\] here$/);
        assert.equal(second!.output?.text, api.text, 'the model’s text is kept');
        assert.ok(Array.isArray(second!.messages) && (second!.messages as unknown[]).length >= 1);
        assert.ok(!JSON.stringify(second).includes('bbbbbbbbbbbbbbbb'));

        const linked = await tb.api<Interception>('GET', `/api/v1/interceptions/${first!.id}`, dev.key);
        assert.deepEqual(linked.body.toolCalls[0]!.result, {
          at: second!.startedAt,
          isError: api.errors,
          interceptionId: second!.id,
        });
      });
    }
  }

  it('capture none keeps metadata and usage only; the default keeps the prompt but not the output', async () => {
    const quiet = await tb.addUser('none@example.com', { team: 'private' });
    anthropic.next({ kind: 'tool', name: 'Bash', input: { command: 'cat /etc/passwd' } });
    await post(quiet.key, '/anthropic/v1/messages', APIS[0]!.first(false));
    const [rec] = await tb.interceptions(1, quiet.key);
    assert.equal(rec!.capture, 'none');
    assert.equal(rec!.prompt, null);
    assert.equal(rec!.toolCalls[0]!.name, 'Bash');
    assert.equal(rec!.toolCalls[0]!.input, null);
    assert.ok(rec!.usage.input > 0);

    const plain = await tb.addUser('default@example.com');
    await post(plain.key, '/anthropic/v1/messages', APIS[0]!.first(false));
    const [d] = await tb.interceptions(1, plain.key);
    assert.equal(d!.capture, 'prompt');
    assert.equal(d!.prompt, 'run ls please');
    assert.equal(d!.output, undefined);
    assert.equal(d!.messages, undefined);
  });
});
