import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import OpenAI from 'openai';
import type { Interception } from '../../shared/interception';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { everythingStdio } from '../helpers/mcp-servers';
import { ECHO, ToolModelMock } from '../helpers/tool-model-mock';

/**
 * Codex offers each MCP server's tools inside a Responses `namespace` tool (`mcp__github`), and the
 * model calls one by its name alone: `{type: "function_call", namespace: "mcp__github", name:
 * "echo"}`. Claude Code names the same tool `mcp__github__echo`; a rule on either must hold.
 */
describe('tool-call policy on Responses calls of a tool inside a namespace (Codex’s MCP tools)', function () {
  this.timeout(30_000);
  let mock: ToolModelMock;
  let tb: TestBridge;
  let openai: OpenAI;

  before(async () => {
    mock = await new ToolModelMock().start();
    mock.brain = (v) =>
      v.results.length > 0
        ? { text: 'done' }
        : { text: 'Calling.', calls: [{ name: 'echo', namespace: 'mcp__github', input: { message: 'hi' } }] };
    tb = await startBridge(mock.url, { AIBRIDGE_OPENAI_BASE_URL: `${mock.url}/v1` });
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'no-github', tool: 'mcp__github__*', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const dev = await tb.addUser('codex-ns@example.com');
    openai = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
  });
  after(async () => {
    await tb?.close();
    await mock?.stop();
  });

  const tools = [
    {
      type: 'namespace',
      name: 'mcp__github',
      tools: [{ type: 'function', name: 'echo', parameters: { type: 'object', properties: {} } }],
    },
  ] as unknown as OpenAI.Responses.Tool[];

  async function newest(): Promise<Interception> {
    const [rec] = await tb.interceptions(1);
    return rec!;
  }

  it('streamed: the call is replaced by the blocked message, and recorded by its whole name with its server', async () => {
    const final = await openai.responses
      .stream({ model: 'gpt-test', tools, input: 'echo hi' })
      .finalResponse();
    assert.ok(!final.output.some((o) => o.type === 'function_call'), JSON.stringify(final.output));
    assert.match(final.output_text, /AI Bridge blocked mcp__github__echo/);
    const rec = await newest();
    assert.deepEqual(
      rec.toolCalls.map((c) => [c.name, c.server, c.policy?.action]),
      [['mcp__github__echo', 'github', 'deny']],
    );
  });

  it('whole: the same', async () => {
    const res = await openai.responses.create({ model: 'gpt-test', tools, input: 'echo hi' });
    assert.ok(!res.output.some((o) => o.type === 'function_call'), JSON.stringify(res.output));
    assert.match(res.output_text, /AI Bridge blocked mcp__github__echo/);
    const rec = await newest();
    assert.deepEqual(
      rec.toolCalls.map((c) => [c.name, c.server, c.policy?.action]),
      [['mcp__github__echo', 'github', 'deny']],
    );
    const listed = await tb.api<{ items: { name: string }[] }>(
      'GET',
      '/api/v1/tool-calls?tool=mcp__github__echo',
      tb.adminKey,
    );
    assert.ok(listed.body.items.length >= 2, 'found by its whole name');
  });

  it("Codex's own namespaces (not an MCP server's) keep the names rules already use", async () => {
    mock.brain = (v) =>
      v.results.length > 0
        ? { text: 'done' }
        : {
            text: 'Spawning.',
            calls: [{ name: 'spawn_agent', namespace: 'multi_agent_v1', input: { task: 'x' } }],
          };
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'no-spawn', tool: 'spawn_agent', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200);
    const res = await openai.responses.create({
      model: 'gpt-test',
      tools: [
        {
          type: 'namespace',
          name: 'multi_agent_v1',
          tools: [{ type: 'function', name: 'spawn_agent', parameters: { type: 'object', properties: {} } }],
        },
      ] as unknown as OpenAI.Responses.Tool[],
      input: 'spawn',
    });
    assert.match(res.output_text, /AI Bridge blocked spawn_agent/);
    const rec = await newest();
    assert.deepEqual(
      rec.toolCalls.map((c) => [c.name, c.policy?.action]),
      [['spawn_agent', 'deny']],
    );
  });
});

describe('a client’s namespaced tool named like one the bridge injects', function () {
  this.timeout(60_000);
  let mock: ToolModelMock;
  let tb: TestBridge;
  let openai: OpenAI;

  before(async () => {
    mock = await new ToolModelMock().start();
    mock.brain = (v) =>
      v.results.length > 0
        ? { text: `ran: ${v.results.map((r) => r.text).join(' ')}` }
        : {
            text: 'Calling.',
            calls: [{ name: ECHO, namespace: 'mcp__evil', input: { message: 'whose call?' } }],
          };
    const dir = await tempDir();
    await fs.writeFile(
      path.join(dir, 'mcp-servers.json'),
      JSON.stringify({ servers: { everything: everythingStdio({ tools: { allow: ['echo'] } }) } }),
    );
    tb = await startBridge(mock.url, { AIBRIDGE_OPENAI_BASE_URL: `${mock.url}/v1` }, dir);
    await tb.bridge.mcp.ready();
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'no-evil', tool: 'mcp__evil__*', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200);
    const dev = await tb.addUser('ns-collide@example.com');
    openai = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
  });
  after(async () => {
    await tb?.close();
    await mock?.stop();
  });

  it('is the client’s call, judged by its rule: the bridge never runs it', async () => {
    const before = mock.requests.length;
    const tools = [
      {
        type: 'namespace',
        name: 'mcp__evil',
        tools: [{ type: 'function', name: ECHO, parameters: { type: 'object', properties: {} } }],
      },
    ] as unknown as OpenAI.Responses.Tool[];
    for (const stream of [false, true]) {
      const res = stream
        ? await openai.responses.stream({ model: 'gpt-test', tools, input: 'go' }).finalResponse()
        : await openai.responses.create({ model: 'gpt-test', tools, input: 'go' });
      assert.match(res.output_text, /AI Bridge blocked mcp__evil__/, JSON.stringify(res.output));
      assert.doesNotMatch(res.output_text, /ran: /, 'no round ran the bridge’s tool');
      const [rec] = await tb.interceptions(1);
      assert.deepEqual(
        rec!.toolCalls.map((c) => [c.name, c.injected, c.policy?.action]),
        [[`mcp__evil__${ECHO}`, false, 'deny']],
      );
    }
    assert.equal(mock.requests.length - before, 2, 'one upstream round a request, no tool result sent back');
  });
});
