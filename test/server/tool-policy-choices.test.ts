import assert from 'node:assert/strict';
import http from 'node:http';
import OpenAI from 'openai';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { type Listening, listenOnLoopback } from '../helpers/loopback';

/** A Chat Completions upstream that streams the chunks it is given, whatever the request. */
class ScriptedChat {
  chunks: unknown[] = [];
  private readonly server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const c of this.chunks) res.write(`data: ${JSON.stringify(c)}\n\n`);
      res.end('data: [DONE]\n\n');
    });
  });
  private listening: Listening | undefined;
  url = '';

  async start(): Promise<this> {
    this.listening = await listenOnLoopback(this.server);
    this.url = this.listening.origin;
    return this;
  }

  async stop(): Promise<void> {
    await this.listening?.stop();
  }
}

const base = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-test' };
const chunk = (index: number, delta: Record<string, unknown>, finish: string | null = null) => ({
  ...base,
  choices: [{ index, delta, logprobs: null, finish_reason: finish }],
});
const call = (id: string, name: string) => ({
  tool_calls: [{ index: 0, id, type: 'function', function: { name, arguments: '' } }],
});
const args = (text: string) => ({ tool_calls: [{ index: 0, function: { arguments: text } }] });

describe('tool-call policy on a Chat Completions stream of several choices', function () {
  this.timeout(30_000);
  let upstream: ScriptedChat;
  let tb: TestBridge;
  let openai: OpenAI;

  before(async () => {
    upstream = await new ScriptedChat().start();
    tb = await startBridge(upstream.url, { AIBRIDGE_OPENAI_BASE_URL: `${upstream.url}/v1` });
    const dev = await tb.addUser('dev@example.com');
    openai = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'rm-root', tool: 'Bash', argumentPattern: 'rm -rf /', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200);
  });

  after(async () => {
    await tb?.close();
    await upstream?.stop();
  });

  it('a denied call of one choice still streaming when another choice finishes never reaches the client (n: 2)', async () => {
    // Choices interleave: choice 0 finishes while choice 1's call has only half its arguments.
    upstream.chunks = [
      chunk(0, { role: 'assistant', ...call('call_a', 'Bash') }),
      chunk(1, { role: 'assistant', ...call('call_b', 'Bash') }),
      chunk(0, args('{"command":"ls"}')),
      chunk(1, args('{"command":"rm -rf ')),
      chunk(0, {}, 'tool_calls'),
      chunk(1, args('/ --no-preserve-root"}')),
      chunk(1, {}, 'tool_calls'),
    ];
    const done = await openai.chat.completions
      .stream({
        model: 'gpt-test',
        n: 2,
        tools: [{ type: 'function', function: { name: 'Bash', parameters: { type: 'object' } } }],
        messages: [{ role: 'user', content: 'tidy up' }],
      })
      .finalChatCompletion();
    const calls = done.choices.flatMap((c) =>
      (c.message.tool_calls ?? []).map((t) => (t.type === 'function' ? t.function.arguments : '')),
    );
    assert.ok(
      !calls.some((a) => a.includes('rm -rf')),
      `a denied call reached the client: ${calls.join(' | ')}`,
    );
    assert.deepEqual(calls, ['{"command":"ls"}']);
    const second = done.choices.find((c) => c.index === 1)!;
    assert.match(
      second.message.content ?? '',
      /AI Bridge blocked Bash: rm -rf \/ --no-preserve-root \(rule rm-root\)/,
    );
    assert.equal(second.finish_reason, 'stop');
  });
});
