import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import type { ToolCallRecord } from '../../shared/interception';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { InProcessMcpServer } from '../helpers/mcp-servers';
import { type Brain, ToolModelMock } from '../helpers/tool-model-mock';

const DROP = 'aibridge__db__drop_table';
const LIST = 'aibridge__db__list_tables';
const NO_DROP = { id: 'no-drop', tool: '*drop_table*', action: 'deny', scope: 'org' } as const;

/**
 * A database's MCP server over streamable HTTP (stateless), in this process: `list_tables` and
 * `drop_table`, each call it receives written down.
 */
class DbServer extends InProcessMcpServer {
  readonly calls: { tool: string; args: unknown }[];

  constructor() {
    const calls: { tool: string; args: unknown }[] = [];
    super('db', (mcp) => {
      mcp.setRequestHandler(ListToolsRequestSchema, async () => ({
        tools: ['list_tables', 'drop_table'].map((name) => ({
          name,
          description: name.replace('_', ' '),
          inputSchema: { type: 'object' as const, properties: { table: { type: 'string' } } },
        })),
      }));
      mcp.setRequestHandler(CallToolRequestSchema, async (r) => {
        calls.push({ tool: r.params.name, args: r.params.arguments });
        return { content: [{ type: 'text', text: `${r.params.name} done` }] };
      });
    });
    this.calls = calls;
  }
}

/** The user's message names the injected tool to call and the table; with results, the model reports them. */
const brain: Brain = (v) => {
  if (v.results.length > 0)
    return { text: v.results.map((r) => (r.isError ? `ERROR ${r.text}` : `OK ${r.text}`)).join(' | ') };
  const messages = v.body.messages as { content: string }[];
  const [tool, table] = String(messages.at(-1)?.content).split(' ');
  return v.injected.includes(tool!) ? { text: 'On it.', calls: [{ name: tool!, input: { table } }] } : {};
};

describe('tool-call policy on the MCP tools the bridge injects and runs itself', function () {
  this.timeout(60_000);
  let db: DbServer;
  let mock: ToolModelMock;
  let tb: TestBridge;
  let anthropic: Anthropic;
  let records = 0;

  before(async () => {
    db = await new DbServer().start();
    mock = await new ToolModelMock().start();
    mock.brain = brain;
    const dir = await tempDir();
    await fs.writeFile(
      path.join(dir, 'mcp-servers.json'),
      JSON.stringify({ servers: { db: { transport: { type: 'http', url: db.url } } } }),
    );
    tb = await startBridge(mock.url, {}, dir);
    await tb.bridge.mcp.ready();
    const dev = await tb.addUser('dba@example.com');
    anthropic = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
  });

  after(async () => {
    await tb?.close();
    await mock?.stop();
    await db?.stop();
  });

  async function rules(list: unknown[]): Promise<void> {
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: list });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  }

  /** One request (whole or streamed) asking the model for `tool` on `table`: its answer text and the call's record. */
  async function ask(
    tool: string,
    table: string,
    stream = false,
  ): Promise<{ answer: string; call: ToolCallRecord | undefined }> {
    const request = {
      model: 'claude-test',
      max_tokens: 100,
      messages: [{ role: 'user' as const, content: `${tool} ${table}` }],
    };
    const msg = stream
      ? await anthropic.messages.stream(request).finalMessage()
      : await anthropic.messages.create(request);
    // The round with the call, and the round that carried its result back.
    records += 2;
    const recs = await tb.interceptions(records);
    const call = recs
      .flatMap((r) => r.toolCalls)
      .find((c) => c.name === tool && (c.input as { table?: string }).table === table);
    return { answer: msg.content.map((b) => (b.type === 'text' ? b.text : '')).join(''), call };
  }

  it('a deny rule keeps the bridge from running the call: the model is told, the record says denied', async () => {
    await rules([NO_DROP]);
    for (const [table, stream] of [
      ['users', false],
      ['orders', true],
    ] as const) {
      const before = mock.requests.length;
      const ran = db.calls.length;
      const { answer, call } = await ask(DROP, table, stream);
      assert.deepEqual(db.calls.slice(ran), [], 'the MCP server never received the call');
      assert.equal(mock.requests.length - before, 2, 'the loop went on with a second round');
      const result = mock.requests.at(-1)!.view.results;
      const blocked = `AI Bridge blocked ${DROP}: {"table":"${table}"} (rule no-drop)`;
      assert.deepEqual(
        result.map((r) => ({ isError: r.isError, text: r.text })),
        [{ isError: true, text: blocked }],
        'the model got an error tool result',
      );
      assert.equal(answer, `On it.ERROR ${blocked}`);
      assert.ok(call, 'the injected call is recorded');
      assert.equal(call.injected, true);
      assert.deepEqual(call.policy, { rule: 'no-drop', action: 'deny' });
      assert.equal(call.execution?.outcome, 'not_run');
      assert.equal(call.execution?.error, 'denied by rule no-drop');
      assert.equal(call.result?.isError, true);
    }
  });

  it('a rule written for the gateway or direct names covers the injected tool too', async () => {
    for (const tool of ['db__drop_table', 'mcp__db__drop_*']) {
      await rules([{ id: 'by-name', tool, action: 'deny', scope: 'user', subject: 'dba@example.com' }]);
      const ran = db.calls.length;
      const { call } = await ask(DROP, `t-${tool}`);
      assert.deepEqual(db.calls.slice(ran), []);
      assert.deepEqual(call?.policy, { rule: 'by-name', action: 'deny' });
    }
  });

  it('a call no rule matches still runs, and an audit rule lets it run and marks it', async () => {
    await rules([NO_DROP]);
    const listed = await ask(LIST, 'all');
    assert.deepEqual(db.calls.at(-1), { tool: 'list_tables', args: { table: 'all' } });
    assert.equal(listed.answer, 'On it.OK list_tables done');
    assert.equal(listed.call?.execution?.outcome, 'ok');
    assert.equal(listed.call?.policy, undefined);

    await rules([{ id: 'watch-drops', tool: 'db__drop_table', action: 'audit', scope: 'org' }]);
    const dropped = await ask(DROP, 'scratch');
    assert.deepEqual(db.calls.at(-1), { tool: 'drop_table', args: { table: 'scratch' } });
    assert.equal(dropped.answer, 'On it.OK drop_table done');
    assert.equal(dropped.call?.execution?.outcome, 'ok');
    assert.deepEqual(dropped.call?.policy, { rule: 'watch-drops', action: 'audit' });

    await rules([]);
    const free = await ask(DROP, 'temp');
    assert.deepEqual(db.calls.at(-1), { tool: 'drop_table', args: { table: 'temp' } });
    assert.equal(free.call?.execution?.outcome, 'ok');
    assert.equal(free.call?.policy, undefined);
  });

  it('a dry run counts the injected calls the rules would judge', async () => {
    const res = await tb.api<{ denied: number; items: { tool: string; rule: string }[] }>(
      'POST',
      '/api/v1/tool-policy/dry-run',
      tb.adminKey,
      { rules: [NO_DROP], days: 1 },
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    // users, orders, the two by-name ones, scratch and temp: every drop_table call that was judged.
    assert.equal(res.body.denied, 6);
    assert.ok(res.body.items.every((i) => i.tool === DROP && i.rule === 'no-drop'));
  });
});
