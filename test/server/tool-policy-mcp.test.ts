import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { everythingStdio } from '../helpers/mcp-servers';
import { type Brain, ECHO, ToolModelMock } from '../helpers/tool-model-mock';

const DENIED = { name: 'Bash', input: { command: 'rm -rf / --no-preserve-root' } };
const BLOCKED_TEXT = 'AI Bridge blocked Bash: rm -rf / --no-preserve-root (rule rm-root)';

/** Round 1 calls the bridge's injected echo tool; round 2, with its result, calls the client's Bash. */
const brain: Brain = (v) =>
  v.results.length === 0 && v.injected.includes(ECHO)
    ? { text: 'Checking.', calls: [{ name: ECHO, input: { message: 'hi' } }] }
    : { text: 'Now cleaning.', calls: [DENIED] };

describe('tool-call policy on requests the bridge gives MCP tools', function () {
  this.timeout(60_000);
  let mock: ToolModelMock;
  let tb: TestBridge;
  let anthropic: Anthropic;
  let openai: OpenAI;

  before(async () => {
    mock = await new ToolModelMock().start();
    mock.brain = brain;
    const dir = await tempDir();
    await fs.writeFile(
      path.join(dir, 'mcp-servers.json'),
      JSON.stringify({ servers: { everything: everythingStdio({ tools: { allow: ['echo'] } }) } }),
    );
    tb = await startBridge(mock.url, { AIBRIDGE_OPENAI_BASE_URL: `${mock.url}/v1` }, dir);
    await tb.bridge.mcp.ready();
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'rm-root', tool: 'Bash', argumentPattern: 'rm -rf /', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200);
    const dev = await tb.addUser('mcp-agent@example.com');
    anthropic = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    openai = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
  });

  after(async () => {
    await tb?.close();
    await mock?.stop();
  });

  const request = {
    model: 'claude-test',
    max_tokens: 100,
    tools: [
      { name: 'Bash', description: 'shell', input_schema: { type: 'object' as const, properties: {} } },
    ],
    messages: [{ role: 'user' as const, content: 'tidy up' }],
  };

  it('Anthropic, streamed: the client call of the last round is replaced, the turn ends', async () => {
    const before = mock.requests.length;
    const msg = await anthropic.messages.stream(request).finalMessage();
    assert.equal(mock.requests.length - before, 2, 'the injected tool ran and a second round was asked');
    assert.ok(msg.content.every((b) => b.type === 'text'));
    const last = msg.content.at(-1);
    assert.equal(last?.type === 'text' && last.text, BLOCKED_TEXT);
    assert.equal(msg.stop_reason, 'end_turn');
  });

  it('Anthropic, whole: the composed answer has the message in place of the call', async () => {
    const msg = await anthropic.messages.create(request);
    assert.ok(msg.content.every((b) => b.type === 'text'));
    const last = msg.content.at(-1);
    assert.equal(last?.type === 'text' && last.text, BLOCKED_TEXT);
    assert.equal(msg.stop_reason, 'end_turn');
    const recs = await tb.interceptions(4);
    const denied = recs.flatMap((r) => r.toolCalls).filter((c) => c.policy?.action === 'deny');
    assert.equal(denied.length, 2, 'both requests recorded the denied call on their last round');
    assert.ok(recs.flatMap((r) => r.toolCalls).some((c) => c.injected && c.policy === undefined));
  });

  it('Chat Completions, streamed: the call is gone and the turn stops', async () => {
    const done = await openai.chat.completions
      .stream({
        model: 'gpt-test',
        tools: [
          { type: 'function', function: { name: 'Bash', parameters: { type: 'object', properties: {} } } },
        ],
        messages: [{ role: 'user', content: 'tidy up' }],
      })
      .finalChatCompletion();
    const choice = done.choices[0]!;
    assert.ok(choice.message.content?.endsWith(BLOCKED_TEXT), choice.message.content ?? '');
    assert.equal(choice.message.tool_calls?.length ?? 0, 0);
    assert.equal(choice.finish_reason, 'stop');
  });

  it('Responses, streamed: a message item in place of the call', async () => {
    const final = await openai.responses
      .stream({
        model: 'gpt-test',
        tools: [
          { type: 'function', name: 'Bash', parameters: { type: 'object', properties: {} }, strict: false },
        ],
        input: 'tidy up',
      })
      .finalResponse();
    assert.ok(!final.output.some((o) => o.type === 'function_call'));
    assert.ok(final.output_text.endsWith(BLOCKED_TEXT), final.output_text);
  });
});
