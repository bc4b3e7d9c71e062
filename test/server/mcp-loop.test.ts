import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { Interception } from '../../shared/interception';
import type { BridgeEvent } from '../../shared/protocol';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { deadUrl, everythingStdio } from '../helpers/mcp-servers';
import { defaultBrain, ECHO, ROUND_USAGE, ToolModelMock } from '../helpers/tool-model-mock';

const SUM = 'aibridge__everything__get-sum';
const SLOW = 'aibridge__everything__trigger-long-running-operation';
const ANSWER = 'Tool said: Echo: hello from the model';
const CLIENT_TOOL = {
  name: 'get_weather',
  description: 'The weather in a city',
  input_schema: { type: 'object' as const, properties: { city: { type: 'string' } } },
};

/** The records of the last request, oldest round first. */
async function lastRounds(tb: TestBridge, before: number, key: string): Promise<Interception[]> {
  const all = await tb.interceptions(before + 1, key);
  const fresh = all.slice(0, all.length - before);
  return fresh.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.seq - b.seq);
}

describe('MCP tools injected into model requests (server-everything over stdio)', function () {
  this.timeout(60_000);
  let mock: ToolModelMock;
  let tb: TestBridge;
  let dev: { key: string; user: { id: string } };
  let anthropic: Anthropic;
  let openai: OpenAI;
  const events: BridgeEvent[] = [];
  let down = '';

  before(async () => {
    mock = await new ToolModelMock().start();
    const dir = await tempDir();
    down = await deadUrl();
    await fs.writeFile(
      path.join(dir, 'mcp-servers.json'),
      JSON.stringify({
        servers: {
          everything: everythingStdio({
            tools: { allow: ['echo', 'get-sum', 'trigger-long-running-operation'], deny: ['get-env'] },
            timeoutMs: 1500,
          }),
          down: { transport: { type: 'http', url: down } },
        },
      }),
    );
    tb = await startBridge(
      mock.url,
      {
        AIBRIDGE_OPENAI_BASE_URL: `${mock.url}/v1`,
        AIBRIDGE_MCP_MAX_ROUNDS: '3',
        AIBRIDGE_MCP_CONNECT_TIMEOUT_MS: '5000',
      },
      dir,
    );
    tb.bridge.bus.subscribe((e) => events.push(e));
    await tb.bridge.mcp.ready();
    dev = await tb.addUser('mcp-dev@example.com', { team: 'tools' });
    anthropic = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    openai = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
  });
  beforeEach(() => {
    mock.brain = defaultBrain;
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  async function count(): Promise<number> {
    return (await tb.interceptions(0, dev.key)).length;
  }

  it('lists the allowed tools of the server and reports the one that is down', async () => {
    const res = await tb.api<{
      items: { name: string; status: { state: string; tools?: string[]; error?: string } }[];
    }>('GET', '/api/v1/mcp/servers', tb.adminKey);
    const byName = Object.fromEntries(res.body.items.map((s) => [s.name, s.status]));
    assert.equal(byName.everything?.state, 'ready');
    assert.deepEqual([...(byName.everything?.tools ?? [])].sort(), [
      'echo',
      'get-sum',
      'trigger-long-running-operation',
    ]);
    assert.equal(byName.down?.state, 'down');
    assert.ok(byName.down?.error);
  });

  it('Anthropic, not streamed: runs the injected tool and answers in one message with summed usage', async () => {
    const n = await count();
    const seen = mock.requests.length;
    const msg = await anthropic.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 200,
      tools: [CLIENT_TOOL],
      messages: [{ role: 'user', content: 'Echo something' }],
    });
    assert.deepEqual(
      msg.content.map((b) => b.type),
      ['text', 'text'],
    );
    assert.equal((msg.content[1] as { text: string }).text, ANSWER);
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.usage.input_tokens, 2 * ROUND_USAGE.input);
    assert.equal(msg.usage.output_tokens, 2 * ROUND_USAGE.output);
    assert.equal(msg.usage.cache_read_input_tokens, 2 * ROUND_USAGE.cacheRead);

    const [r1, r2] = mock.requests.slice(seen);
    assert.equal(mock.requests.length - seen, 2);
    // The client's tool is untouched and first; the injected ones follow under the prefix.
    const tools = r1!.body.tools as { name: string; input_schema?: unknown }[];
    assert.deepEqual(tools[0], CLIENT_TOOL);
    assert.ok(tools.some((t) => t.name === ECHO));
    assert.ok(!tools.some((t) => t.name.includes('get-env')), 'denied tools are not offered');
    assert.ok(!tools.some((t) => t.name.startsWith('aibridge__down__')));
    assert.deepEqual(
      r2!.view.results.map((r) => r.text),
      ['Echo: hello from the model'],
    );

    const rounds = await lastRounds(tb, n, dev.key);
    assert.equal(rounds.length, 2);
    const call = rounds[0]!.toolCalls.find((c) => c.name === ECHO)!;
    assert.equal(call.injected, true);
    assert.equal(call.server, 'everything');
    assert.deepEqual(call.input, { message: 'hello from the model' });
    assert.equal(call.execution?.tool, 'echo');
    assert.equal(call.execution?.outcome, 'ok');
    assert.equal(call.execution?.resultBytes, Buffer.byteLength('Echo: hello from the model'));
    assert.equal(call.execution?.error, null);
    assert.equal(call.result?.interceptionId, rounds[1]!.id);
    for (const r of rounds) {
      assert.equal(r.usage.input, ROUND_USAGE.input);
      assert.equal(r.status, 'ok');
    }
  });

  it('a tokens-per-minute limit the first round’s hold fills does not refuse the exchange halfway: later rounds hold nothing', async () => {
    const capped = await tb.addUser('mcp-tpm@example.com', { team: 'tools' });
    // The first round holds its max_tokens (16,000) and its body: over the limit, from its own
    // admission on. The second round is admitted before the first is recorded.
    const put = await tb.api('PUT', '/api/v1/rate-limits', tb.adminKey, {
      scope: 'user',
      subject: capped.user.email,
      tpm: 10_000,
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const client = new Anthropic({ apiKey: capped.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    const msg = await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 16_000,
      tools: [CLIENT_TOOL],
      messages: [{ role: 'user', content: 'Echo something' }],
    });
    assert.equal((msg.content[1] as { text: string }).text, ANSWER, 'both rounds ran');
    const rounds = await lastRounds(tb, 0, capped.key);
    assert.equal(rounds.length, 2);
  });

  it("records every round under the first one's session (the client's session header) and model", async () => {
    const n = await count();
    await anthropic.messages.create(
      {
        model: 'claude-sonnet-4-6',
        max_tokens: 200,
        tools: [CLIENT_TOOL],
        messages: [{ role: 'user', content: 'Echo something' }],
      },
      { headers: { 'x-aibridge-session-id': 'mcp-session-1' } },
    );
    const rounds = await lastRounds(tb, n, dev.key);
    assert.equal(rounds.length, 2);
    for (const r of rounds) {
      assert.equal(r.sessionId, 'mcp-session-1');
      assert.equal(r.model, 'claude-sonnet-4-6');
    }
  });

  it('Anthropic, streamed: text arrives as it streams, one message_start, renumbered blocks, summed usage', async () => {
    const n = await count();
    const stream = anthropic.messages.stream({
      model: 'claude-sonnet-4-6',
      max_tokens: 200,
      messages: [{ role: 'user', content: 'Echo something, streamed' }],
    });
    const texts: string[] = [];
    stream.on('text', (t) => texts.push(t));
    const final = await stream.finalMessage();
    assert.equal(texts.join(''), `Let me check.${ANSWER}`);
    assert.deepEqual(
      final.content.map((b) => b.type),
      ['text', 'text'],
    );
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(final.usage.input_tokens, 2 * ROUND_USAGE.input);
    assert.equal(final.usage.output_tokens, 2 * ROUND_USAGE.output);
    assert.equal(final.usage.cache_creation_input_tokens, 2 * ROUND_USAGE.cacheWrite);
    const rounds = await lastRounds(tb, n, dev.key);
    assert.equal(rounds.length, 2);
    assert.ok(rounds.every((r) => r.streamed));
    assert.equal(rounds[0]!.toolCalls[0]?.execution?.outcome, 'ok');
  });

  it('relays the first round text before the tools run, not when the rounds are done', async () => {
    mock.brain = (v) =>
      v.results.length > 0
        ? { text: 'Finished.' }
        : { text: 'Working on it.', calls: [{ name: SLOW, input: { duration: 0.4, steps: 1 } }] };
    const seen = mock.requests.length;
    const stream = anthropic.messages.stream({
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'slow' }],
    });
    let firstText = 0;
    stream.on('text', () => {
      firstText ||= Date.now();
    });
    await stream.finalMessage();
    const second = mock.requests[seen + 1]!.at;
    assert.ok(firstText > 0 && firstText < second - 300, `text at ${firstText}, next round at ${second}`);
  });

  it('stops an injected tool that is running when the client leaves, and sends no further round', async () => {
    mock.brain = (v) =>
      v.results.length > 0
        ? { text: 'Finished.' }
        : { text: 'Working on it.', calls: [{ name: SLOW, input: { duration: 1.4, steps: 1 } }] };
    const before = await count();
    const seen = mock.requests.length;
    const ac = new AbortController();
    const stream = await anthropic.messages.create(
      {
        model: 'claude-sonnet-4-6',
        max_tokens: 100,
        stream: true,
        messages: [{ role: 'user', content: 'slow' }],
      },
      { signal: ac.signal },
    );
    await stream[Symbol.asyncIterator]().next();
    // The first round has ended and its tool (1.4 s) is running.
    await eventually(() => mock.requests.length === seen + 1, { what: 'the first round' });
    await new Promise((r) => setTimeout(r, 300));
    const left = Date.now();
    ac.abort();
    const [round] = await lastRounds(tb, before, dev.key);
    // The tool's cancellation ends the round at once; waiting for the tool would take ~1.1 s more.
    assert.ok(Date.now() - left < 900, `recorded ${Date.now() - left} ms after the client left`);
    assert.equal(round!.status, 'client_aborted');
    assert.equal(round!.toolCalls[0]?.execution?.outcome, 'cancelled');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(mock.requests.length, seen + 1, 'no round after the client left');
  });

  it('Chat Completions, not streamed and streamed (with and without usage)', async () => {
    const plain = await openai.chat.completions.create({
      model: 'gpt-5',
      messages: [{ role: 'user', content: 'Echo' }],
    });
    assert.equal(plain.choices[0]?.message.content, `Let me check.\n\n${ANSWER}`);
    assert.equal(plain.choices[0]?.message.tool_calls, undefined);
    assert.equal(plain.choices[0]?.finish_reason, 'stop');
    assert.equal(plain.usage?.prompt_tokens, 2 * (ROUND_USAGE.input + ROUND_USAGE.cacheRead));
    assert.equal(plain.usage?.completion_tokens, 2 * ROUND_USAGE.output);

    const stream = openai.chat.completions.stream({
      model: 'gpt-5',
      messages: [{ role: 'user', content: 'Echo, streamed' }],
      stream_options: { include_usage: true },
    });
    const final = await stream.finalChatCompletion();
    assert.equal(final.choices[0]?.message.content, `Let me check.\n\n${ANSWER}`);
    assert.deepEqual(final.choices[0]?.message.tool_calls ?? [], []);
    assert.equal(final.choices[0]?.finish_reason, 'stop');
    assert.equal(final.usage?.completion_tokens, 2 * ROUND_USAGE.output);
    assert.equal(final.usage?.prompt_tokens_details?.cached_tokens, 2 * ROUND_USAGE.cacheRead);

    const seen = mock.requests.length;
    const chunks: unknown[] = [];
    const raw = await openai.chat.completions.create({
      model: 'gpt-5',
      messages: [{ role: 'user', content: 'Echo, streamed, no usage asked' }],
      stream: true,
    });
    let text = '';
    for await (const c of raw) {
      chunks.push(c);
      text += c.choices[0]?.delta.content ?? '';
      assert.equal(c.choices[0]?.delta.tool_calls, undefined, 'no injected call reaches the client');
    }
    assert.equal(text, `Let me check.\n\n${ANSWER}`);
    assert.ok(
      chunks.every((c) => !('usage' in (c as object))),
      'usage the client did not ask for stays hidden',
    );
    assert.equal(new Set(chunks.map((c) => (c as { id: string }).id)).size, 1, 'one completion id');
    assert.equal(mock.requests.length - seen, 2);
  });

  it('Responses, not streamed and streamed', async () => {
    const plain = await openai.responses.create({ model: 'gpt-5', input: 'Echo please' });
    assert.equal(plain.output_text, `Let me check.${ANSWER}`);
    assert.ok(plain.output.every((o) => o.type === 'message'));
    assert.equal(plain.usage?.output_tokens, 2 * ROUND_USAGE.output);
    assert.ok(!(plain.tools ?? []).some((t) => 'name' in t && String(t.name).startsWith('aibridge__')));

    const seen = mock.requests.length;
    const stream = openai.responses.stream({ model: 'gpt-5', input: 'Echo please, streamed' });
    const deltas: string[] = [];
    stream.on('response.output_text.delta', (e) => deltas.push(e.delta));
    const final = await stream.finalResponse();
    assert.equal(deltas.join(''), `Let me check.${ANSWER}`);
    assert.equal(final.output.length, 2);
    assert.ok(final.output.every((o) => o.type === 'message'));
    assert.equal(final.usage?.input_tokens, 2 * (ROUND_USAGE.input + ROUND_USAGE.cacheRead));
    // The follow-up carried the model's call and its output after the user's input.
    const input = mock.requests[seen + 1]!.body.input as { type?: string; role?: string }[];
    assert.deepEqual(
      input.map((i) => i.type ?? i.role),
      ['user', 'message', 'function_call', 'function_call_output'],
    );
  });

  it('runs two calls of one round concurrently', async () => {
    mock.brain = (v) =>
      v.results.length > 0
        ? { text: `done ${v.results.length}` }
        : {
            calls: [
              { name: SLOW, input: { duration: 0.6, steps: 1 } },
              { name: SLOW, input: { duration: 0.6, steps: 1 } },
            ],
          };
    const n = await count();
    const msg = await anthropic.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'Two slow things' }],
    });
    assert.equal((msg.content[0] as { text: string }).text, 'done 2');
    const calls = (await lastRounds(tb, n, dev.key))[0]!.toolCalls;
    assert.equal(calls.length, 2);
    const spans = calls.map((c) => {
      const start = Date.parse(c.execution!.startedAt);
      return [start, start + c.execution!.durationMs] as const;
    });
    assert.ok(
      spans[0]![0] < spans[1]![1] && spans[1]![0] < spans[0]![1],
      `calls did not overlap: ${JSON.stringify(spans)}`,
    );
    assert.ok(calls.every((c) => c.execution!.durationMs >= 500));
  });

  it('feeds back a failing tool and a timed-out tool as error results', async () => {
    mock.brain = (v) =>
      v.results.length > 0
        ? { text: v.results.map((r) => `${r.isError ? 'E' : 'ok'}:${r.text}`).join(' | ') }
        : {
            calls: [
              { name: SUM, input: { a: 'not a number', b: 1 } },
              { name: SLOW, input: { duration: 5, steps: 1 } },
            ],
          };
    const n = await count();
    const res = await openai.chat.completions.create({
      model: 'gpt-5',
      messages: [{ role: 'user', content: 'x' }],
    });
    const text = res.choices[0]?.message.content ?? '';
    assert.match(text, /^E:Error: .+ \| E:Error: The tool timed out after 1500 ms\.$/);
    const calls = (await lastRounds(tb, n, dev.key))[0]!.toolCalls;
    assert.equal(calls[0]?.execution?.outcome, 'error');
    assert.ok(calls[0]?.execution?.error);
    assert.equal(calls[1]?.execution?.outcome, 'timeout');
    assert.ok(
      calls.every((c) => c.result?.interceptionId),
      'each call points at the round its result went to',
    );
    const metrics = await tb.bridge.metrics.registry.getSingleMetricAsString(
      'aibridge_injected_tool_calls_total',
    );
    assert.match(metrics, /{server="everything",tool="trigger-long-running-operation",outcome="timeout"} 1/);
  });

  it('Anthropic error results carry is_error', async () => {
    mock.brain = (v) =>
      v.results.length > 0 ? { text: 'ok' } : { calls: [{ name: SUM, input: { a: 'x', b: 2 } }] };
    const seen = mock.requests.length;
    await anthropic.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'sum' }],
    });
    const follow = mock.requests[seen + 1]!.body.messages as { content: { is_error?: boolean }[] }[];
    assert.equal(follow.at(-1)!.content[0]!.is_error, true);
  });

  it('stops a runaway loop at the round limit: the last round must answer without tools', async () => {
    mock.brain = (v) =>
      v.toolChoiceNone
        ? { text: `stopped after ${v.rounds} rounds` }
        : { text: `round ${v.rounds + 1}. `, calls: [{ name: ECHO, input: { message: 'again' } }] };
    const n = await count();
    const seen = mock.requests.length;
    const stream = anthropic.messages.stream({
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'loop forever' }],
    });
    const final = await stream.finalMessage();
    assert.equal(mock.requests.length - seen, 3);
    assert.deepEqual(mock.requests[seen + 2]!.body.tool_choice, { type: 'none' });
    assert.deepEqual(
      final.content.map((b) => (b as { text: string }).text),
      ['round 1. ', 'round 2. ', 'stopped after 2 rounds'],
    );
    assert.equal(final.usage.output_tokens, 3 * ROUND_USAGE.output);
    assert.equal((await lastRounds(tb, n, dev.key)).length, 3);
  });

  it("leaves the client's own tool calls to the client, and does not run injected calls made beside them", async () => {
    mock.brain = () => ({
      text: 'Both.',
      calls: [
        { name: ECHO, input: { message: 'not run' } },
        { name: 'get_weather', input: { city: 'Paris' } },
      ],
    });
    const n = await count();
    const seen = mock.requests.length;
    const stream = anthropic.messages.stream({
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      tools: [CLIENT_TOOL],
      messages: [{ role: 'user', content: 'weather' }],
    });
    const final = await stream.finalMessage();
    assert.equal(mock.requests.length - seen, 1);
    assert.deepEqual(
      final.content.map((b) => b.type),
      ['text', 'tool_use'],
    );
    assert.equal((final.content[1] as { name: string }).name, 'get_weather');
    assert.equal(final.stop_reason, 'tool_use');
    const [rec] = await lastRounds(tb, n, dev.key);
    const injected = rec!.toolCalls.find((c) => c.name === ECHO)!;
    assert.equal(injected.execution?.outcome, 'not_run');
    assert.equal(rec!.toolCalls.find((c) => c.name === 'get_weather')?.injected, false);
  });

  it('chat: renumbers the client tool calls when injected ones are hidden', async () => {
    mock.brain = () => ({
      calls: [
        { name: ECHO, input: { message: 'hidden' } },
        { name: 'lookup', input: { q: 'x' } },
      ],
    });
    const stream = openai.chat.completions.stream({
      model: 'gpt-5',
      messages: [{ role: 'user', content: 'look up' }],
      tools: [
        { type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } },
      ],
    });
    const final = await stream.finalChatCompletion();
    const calls = final.choices[0]?.message.tool_calls ?? [];
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.type === 'function' ? calls[0].function.name : '', 'lookup');
    assert.equal(final.choices[0]?.finish_reason, 'tool_calls');
  });

  it('injects nothing into VS Code chat requests by default: VS Code runs these tools itself through the MCP gateway', async () => {
    const vscode = new Anthropic({
      apiKey: dev.key,
      baseURL: `${tb.url}/anthropic`,
      maxRetries: 0,
      defaultHeaders: { 'x-aibridge-client': 'vscode-chat' },
    });
    const seen = mock.requests.length;
    const msg = await vscode.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 200,
      tools: [CLIENT_TOOL],
      messages: [{ role: 'user', content: 'Echo something' }],
    });
    assert.equal(mock.requests.length - seen, 1);
    assert.deepEqual(mock.requests[seen]!.body.tools, [CLIENT_TOOL]);
    assert.equal((msg.content[0] as { text: string }).text, 'No tools needed.');
    // The default, and how an admin turns injection back on for everyone.
    const { loadConfig } = await import('../../server/config');
    const dir = await tempDir();
    assert.deepEqual(loadConfig({ 'data-dir': dir }, {}).mcp.injectSkipClients, ['vscode-chat']);
    assert.deepEqual(
      loadConfig({ 'data-dir': dir }, { AIBRIDGE_MCP_INJECT_SKIP_CLIENTS: '' }).mcp.injectSkipClients,
      [],
    );
    assert.deepEqual(
      loadConfig({ 'data-dir': dir }, { AIBRIDGE_MCP_INJECT_SKIP_CLIENTS: 'vscode-chat, continue' }).mcp
        .injectSkipClients,
      ['vscode-chat', 'continue'],
    );
    assert.throws(
      () => loadConfig({ 'data-dir': dir }, { AIBRIDGE_MCP_INJECT_SKIP_CLIENTS: 'VS Code' }),
      /AIBRIDGE_MCP_INJECT_SKIP_CLIENTS/,
    );
  });

  it('injects into VS Code chat requests when AIBRIDGE_MCP_INJECT_SKIP_CLIENTS is empty', async () => {
    const dir = await tempDir();
    await fs.writeFile(
      path.join(dir, 'mcp-servers.json'),
      JSON.stringify({ servers: { everything: everythingStdio({ tools: { allow: ['echo'] } }) } }),
    );
    const other = await startBridge(mock.url, { AIBRIDGE_MCP_INJECT_SKIP_CLIENTS: '' }, dir);
    try {
      await other.bridge.mcp.ready();
      const u = await other.addUser('vscode-inject@example.com');
      const vscode = new Anthropic({
        apiKey: u.key,
        baseURL: `${other.url}/anthropic`,
        maxRetries: 0,
        defaultHeaders: { 'x-aibridge-client': 'vscode-chat' },
      });
      const seen = mock.requests.length;
      const msg = await vscode.messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 200,
        messages: [{ role: 'user', content: 'Echo something' }],
      });
      assert.equal(mock.requests.length - seen, 2);
      assert.ok((mock.requests[seen]!.body.tools as { name: string }[]).some((t) => t.name === ECHO));
      assert.equal((msg.content.at(-1) as { text: string }).text, ANSWER);
    } finally {
      await other.close();
    }
  });

  it('published the injected calls live and warned about the server that is down', async () => {
    const toolEvents = events.filter((e) => e.type === 'tool.call' && e.injected);
    assert.ok(toolEvents.length > 0, 'injected tool.call events');
    const warnings = events.filter((e) => e.type === 'mcp.warning' && e.server === 'down');
    assert.ok(warnings.length > 0, 'mcp.warning for the server that is down');
  });

  it('follows notifications/tools/list_changed (server-everything adds tools once initialised)', async () => {
    const status = async (): Promise<{ listChanges: number; refreshedAt: string }> =>
      (
        await tb.api<{ status: { listChanges: number; refreshedAt: string } }>(
          'GET',
          '/api/v1/mcp/servers/everything',
          tb.adminKey,
        )
      ).body.status;
    await eventually(async () => (await status()).listChanges >= 1, {
      intervalMs: 100,
      what: 'a tools/list_changed notification',
    });
  });
});
