import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  ListResourcesRequestSchema,
  ListToolsRequestSchema,
  ReadResourceRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { connectGateway } from '../helpers/gateway-client';
import { listenOnLoopback } from '../helpers/loopback';
import { InProcessMcpServer } from '../helpers/mcp-servers';

/**
 * An MCP server over streamable HTTP (stateless), in this process. `good` answers; `pages` lists
 * one tool per page with a next cursor for ever; `hang` never answers anything; `fails-calls`
 * lists its tool but answers every tools/call with a 500 whose body holds an internal address.
 */
type Mode = 'good' | 'pages' | 'hang' | 'two-pages' | 'fails-calls' | 'many' | 'huge' | 'grows';

class Upstream extends InProcessMcpServer {
  private readonly counter: { pages: number };

  constructor(mode: Mode) {
    const counter = { pages: 0, grown: false };
    super(
      mode,
      (mcp, res) => {
        mcp.setRequestHandler(ListToolsRequestSchema, async (r) => {
          if (mode === 'two-pages')
            return r.params?.cursor === 'second'
              ? { tools: [{ name: 'second', inputSchema: { type: 'object' as const, properties: {} } }] }
              : {
                  tools: [{ name: 'first', inputSchema: { type: 'object' as const, properties: {} } }],
                  nextCursor: 'second',
                };
          if (mode === 'good' || mode === 'fails-calls' || (mode === 'grows' && !counter.grown))
            return { tools: [{ name: 'echo', inputSchema: { type: 'object' as const, properties: {} } }] };
          // `grows`, once a tool was called: 300 tools.
          if (mode === 'grows')
            return {
              tools: Array.from({ length: 300 }, (_, i) => ({
                name: `t${i}`,
                inputSchema: { type: 'object' as const, properties: {} },
              })),
            };
          // 300 tools on one page, or one tool whose description is 600 KB.
          if (mode === 'many')
            return {
              tools: Array.from({ length: 300 }, (_, i) => ({
                name: i < 3 ? `keep${i}` : `t${i}`,
                inputSchema: { type: 'object' as const, properties: {} },
              })),
            };
          if (mode === 'huge')
            return {
              tools: [
                {
                  name: 'big',
                  description: 'x'.repeat(600 * 1024),
                  inputSchema: { type: 'object' as const, properties: {} },
                },
              ],
            };
          counter.pages++;
          const n = Number(r.params?.cursor ?? 0);
          return {
            tools: [{ name: `t${n}`, inputSchema: { type: 'object' as const, properties: {} } }],
            nextCursor: String(n + 1),
          };
        });
        mcp.setRequestHandler(CallToolRequestSchema, async (r, extra) => {
          if (mode === 'fails-calls') {
            // The HTTP answer a broken backend gives, in place of the call's result (never sent).
            res.writeHead(500, { 'content-type': 'text/plain' });
            res.end('pool exhausted: postgres://svc:hunter2@10.1.2.3:5432/mcp');
            return new Promise<never>(() => undefined);
          }
          // Its tools changed: said on the call's own response stream, as a stateless server can.
          if (mode === 'grows') counter.grown = true;
          if (mode === 'two-pages' || mode === 'grows')
            await extra.sendNotification({ method: 'notifications/tools/list_changed' });
          return { content: [{ type: 'text', text: `${r.params.name} done` }] };
        });
      },
      mode === 'hang',
    );
    this.counter = counter;
  }

  /** Pages of tools listed (`pages` mode). */
  get pages(): number {
    return this.counter.pages;
  }
}

const connect = connectGateway;

/** `p`, or a rejection naming what did not settle within `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** An MCP server's status as admins read it (`GET /api/v1/mcp/servers/:name`). */
async function serverStatus(
  tb: TestBridge,
  name: string,
): Promise<{ state: string; error: string; listChanges: number }> {
  return (
    await tb.api<{ status: { state: string; error: string; listChanges: number } }>(
      'GET',
      `/api/v1/mcp/servers/${name}`,
      tb.adminKey,
    )
  ).body.status;
}

describe('the MCP gateway with a hostile or hanging upstream MCP server', function () {
  this.timeout(60_000);
  let upstream: AnthropicMock;
  const servers: Upstream[] = [];
  const bridges: TestBridge[] = [];
  const clients: Client[] = [];

  before(async () => {
    upstream = await new AnthropicMock().start();
  });

  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const b of bridges) await b.close();
    for (const s of servers) await s.stop();
    await upstream.stop();
  });

  async function bridgeWith(
    defs: Record<string, Upstream>,
    env: Record<string, string>,
  ): Promise<{ tb: TestBridge; key: string }> {
    const dir = await tempDir();
    const file: Record<string, unknown> = {};
    for (const [name, s] of Object.entries(defs)) file[name] = { transport: { type: 'http', url: s.url } };
    await fs.writeFile(path.join(dir, 'mcp-servers.json'), JSON.stringify({ servers: file }));
    const tb = await startBridge(upstream.url, env, dir);
    bridges.push(tb);
    const { key } = await tb.addUser(`dev${bridges.length}@example.com`);
    return { tb, key };
  }
  /** A bridge with one server of `mode` as `name`, its first connection attempt made, and a gateway client. */
  async function gatewayTo(mode: Mode, name: string): Promise<{ tb: TestBridge; client: Client }> {
    const server = await new Upstream(mode).start();
    servers.push(server);
    const { tb, key } = await bridgeWith({ [name]: server }, {});
    await tb.bridge.mcp.ready();
    const client = await connect(tb.url, key);
    clients.push(client);
    return { tb, client };
  }

  it('a server that lists tools with a next cursor for ever is cut off; the other servers keep working', async () => {
    const good = await new Upstream('good').start();
    const pager = await new Upstream('pages').start();
    servers.push(good, pager);
    const { tb, key } = await bridgeWith({ good, pager }, { AIBRIDGE_MCP_CONNECT_TIMEOUT_MS: '5000' });
    const client = await connect(tb.url, key);
    clients.push(client);
    const r = (await within(
      client.callTool({ name: 'good__echo', arguments: {} }),
      8000,
      'a call of another server',
    )) as CallToolResult;
    assert.deepEqual(r.content, [{ type: 'text', text: 'echo done' }]);
    await within(tb.bridge.mcp.ready(), 8000, 'the first connection attempts');
    const pages = pager.pages;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(pager.pages, pages, 'the bridge stopped asking for pages');
    assert.ok(pages <= 1000, `asked for ${pages} pages`);
    const st = await serverStatus(tb, 'pager');
    assert.equal(st.state, 'down');
    assert.match(st.error, /pages/);
  });

  it('a server offering too many tools, or tool definitions too large to inject, is down with the reason; its allow patterns narrow it', async () => {
    const many = await new Upstream('many').start();
    const huge = await new Upstream('huge').start();
    const good = await new Upstream('good').start();
    servers.push(many, huge, good);
    const { tb } = await bridgeWith({ many, huge, good }, {});
    await within(tb.bridge.mcp.ready(), 8000, 'the first connection attempts');
    const status = (name: string) => serverStatus(tb, name);
    const m = await status('many');
    assert.equal(m.state, 'down');
    assert.match(m.error, /more than 256 tools: narrow them with its `tools.allow` patterns/);
    const h = await status('huge');
    assert.equal(h.state, 'down');
    assert.match(h.error, /tool definitions take 6\d\d KB, more than 512 KB/);
    assert.equal((await status('good')).state, 'ready');

    // The same server, its tools narrowed by the admin: up, with the three it offers.
    const dir = await tempDir();
    await fs.writeFile(
      path.join(dir, 'mcp-servers.json'),
      JSON.stringify({
        servers: { many: { transport: { type: 'http', url: many.url }, tools: { allow: ['keep*'] } } },
      }),
    );
    const narrowed = await startBridge(upstream.url, {}, dir);
    bridges.push(narrowed);
    await within(narrowed.bridge.mcp.ready(), 8000, 'the narrowed connection');
    const st = await serverStatus(narrowed, 'many');
    assert.equal(st.state, 'ready', JSON.stringify(st));
  });

  it("a call of one server does not wait for another server's connection attempt", async () => {
    const good = await new Upstream('good').start();
    const hang = await new Upstream('hang').start();
    servers.push(good, hang);
    const { tb, key } = await bridgeWith({ good, hang }, { AIBRIDGE_MCP_CONNECT_TIMEOUT_MS: '8000' });
    // Without a session: every request is on its own (the SDK client's initialize would list nothing).
    const client = await connect(tb.url, key);
    clients.push(client);
    const started = Date.now();
    const r = (await within(
      client.callTool({ name: 'good__echo', arguments: {} }),
      4000,
      'a call of another server',
    )) as CallToolResult;
    assert.deepEqual(r.content, [{ type: 'text', text: 'echo done' }]);
    assert.ok(Date.now() - started < 4000);
  });

  it('a server whose list grows past the caps when it says its list changed is down, not left offering the old list', async () => {
    const { tb, client } = await gatewayTo('grows', 'grows');
    assert.deepEqual(
      (await client.listTools()).tools.map((t) => t.name),
      ['grows__echo'],
    );
    await client.callTool({ name: 'grows__echo', arguments: {} });
    await eventually(async () => (await serverStatus(tb, 'grows')).state === 'down', {
      what: 'the server marked down',
    });
    assert.match((await serverStatus(tb, 'grows')).error, /more than 256 tools/);
  });

  it("keeps every page of a server's tools when the server says its list changed", async () => {
    const { tb, client } = await gatewayTo('two-pages', 'paged');
    const names = async () => (await client.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(await names(), ['paged__first', 'paged__second']);
    await client.callTool({ name: 'paged__first', arguments: {} });
    await eventually(async () => (await serverStatus(tb, 'paged')).listChanges >= 1, {
      what: 'the list_changed notification',
    });
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(await names(), ['paged__first', 'paged__second']);
  });
});

describe("the MCP gateway's notification streams, one member's change", function () {
  this.timeout(30_000);
  let upstream: AnthropicMock;
  let good: Upstream;
  let tb: TestBridge;
  const clients: Client[] = [];

  before(async () => {
    upstream = await new AnthropicMock().start();
    good = await new Upstream('good').start();
    tb = await startBridge(
      upstream.url,
      { AIBRIDGE_MCP_CREDENTIALS_KEY: randomBytes(32).toString('base64') },
      undefined,
      // Open streams are checked again on this beat (30 s in production).
      { liveEvents: { heartbeatMs: 200 } },
    );
    const put = await tb.api('PUT', '/api/v1/mcp/servers/mine', tb.adminKey, {
      transport: { type: 'http', url: good.url },
      auth: { type: 'per_user' },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  });

  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await tb?.close();
    await good?.stop();
    await upstream?.stop();
  });

  /** A client with its notification stream open, counting tools/list_changed. */
  async function listening(key: string): Promise<{ changes: () => number }> {
    let n = 0;
    const client = new Client(
      { name: 'test-agent', version: '1.0.0' },
      { listChanged: { tools: { autoRefresh: false, debounceMs: 0, onChanged: () => n++ } } },
    );
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${tb.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${key}` } },
      }),
    );
    clients.push(client);
    return { changes: () => n };
  }

  it("is told to that member's streams only: a colleague's client hears nothing of it", async () => {
    const alice = await tb.addUser('alice@example.com');
    const bob = await tb.addUser('bob@example.com');
    const a = await listening(alice.key);
    const b = await listening(bob.key);
    // The SDK client opens its notification stream (GET /mcp) after initializing.
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 3; i++) {
      const r = await tb.api('PUT', '/api/v1/me/mcp/mine/credentials', bob.key, { token: `t${i}` });
      assert.equal(r.status, 204);
    }
    await eventually(async () => (b.changes() > 0 ? true : undefined), { what: "bob's own notification" });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(a.changes(), 0, "alice's client was told of bob's credential changes");
  });

  it("a shared server's failure is the admins' to read: a member calling it is not shown what it answered", async () => {
    const broken = http.createServer((req, res) => {
      req.resume();
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('pool exhausted: postgres://svc:hunter2@10.1.2.3:5432/mcp');
    });
    const l = await listenOnLoopback(broken);
    try {
      const put = await tb.api('PUT', '/api/v1/mcp/servers/broken', tb.adminKey, {
        transport: { type: 'http', url: `${l.origin}/mcp` },
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      const status = (put.body as { status: { state: string; error: string } }).status;
      assert.equal(status.state, 'down');
      assert.match(status.error, /10\.1\.2\.3/, 'the admin sees why');
      const carol = await tb.addUser('carol@example.com');
      const client = new Client({ name: 'test-agent', version: '1.0.0' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${tb.url}/mcp`), {
          requestInit: { headers: { authorization: `Bearer ${carol.key}` } },
        }),
      );
      clients.push(client);
      const err = await client.callTool({ name: 'broken__anything', arguments: {} }).then(
        () => assert.fail('expected an error'),
        (e: Error) => e,
      );
      assert.match(err.message, /broken is unavailable/);
      assert.doesNotMatch(err.message, /10\.1\.2\.3|hunter2/);
      const items = await eventually(async () => {
        const r = await tb.api<{ items: { error: string | null }[] }>(
          'GET',
          '/api/v1/tool-calls?via=gateway',
          carol.key,
        );
        return r.body.items.length > 0 ? r.body.items : undefined;
      });
      for (const c of items) assert.doesNotMatch(c.error ?? '', /10\.1\.2\.3|hunter2/);
    } finally {
      await tb.api('DELETE', '/api/v1/mcp/servers/broken', tb.adminKey);
      await l.stop();
    }
  });
  it("a shared server's failure during a call is the admins' to read too: the member is told it failed, not what it answered", async () => {
    const flaky = await new Upstream('fails-calls').start();
    try {
      const put = await tb.api('PUT', '/api/v1/mcp/servers/flaky', tb.adminKey, {
        transport: { type: 'http', url: flaky.url },
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.equal(
        (put.body as { status: { state: string } }).status.state,
        'ready',
        JSON.stringify(put.body),
      );
      const dan = await tb.addUser('dan@example.com');
      const client = await connect(tb.url, dan.key);
      clients.push(client);
      const err = await client.callTool({ name: 'flaky__echo', arguments: {} }).then(
        () => assert.fail('expected an error'),
        (e: Error) => e,
      );
      assert.match(err.message, /flaky failed: the server failed to answer/);
      assert.doesNotMatch(err.message, /10\.1\.2\.3|hunter2/);
      const items = await eventually(async () => {
        const r = await tb.api<{ items: { error: string | null; outcome: string }[] }>(
          'GET',
          '/api/v1/tool-calls?via=gateway',
          dan.key,
        );
        return r.body.items.length > 0 ? r.body.items : undefined;
      });
      assert.equal(items[0]!.outcome, 'error');
      for (const c of items) assert.doesNotMatch(c.error ?? '', /10\.1\.2\.3|hunter2/);
    } finally {
      await tb.api('DELETE', '/api/v1/mcp/servers/flaky', tb.adminKey);
      await flaky.stop();
    }
  });
  it('a notification stream ends when its key is revoked: it is not held, and told, for ever', async () => {
    const erin = await tb.addUser('erin@example.com');
    const headers = {
      authorization: `Bearer ${erin.key}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    };
    const init = await fetch(`${tb.url}/mcp`, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-06-18',
          capabilities: {},
          clientInfo: { name: 'raw', version: '1' },
        },
      }),
    });
    assert.equal(init.status, 200);
    await init.text();
    const session = init.headers.get('mcp-session-id')!;
    // The head comes at once, not with the first keep-alive 15 s later.
    const stream = await within(
      fetch(`${tb.url}/mcp`, {
        headers: {
          authorization: `Bearer ${erin.key}`,
          accept: 'text/event-stream',
          'mcp-session-id': session,
        },
      }),
      5000,
      'the notification stream’s head',
    );
    assert.equal(stream.status, 200);
    const reader = stream.body!.getReader();
    let ended = false;
    const drained = (async () => {
      try {
        while (!(await reader.read()).done);
      } catch {
        // A destroyed connection ends the read with an error: ended all the same.
      }
      ended = true;
    })();
    // Several checks pass while the key is good: the stream stays.
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(ended, false, 'a stream with a good key was ended');
    assert.equal((await tb.api('DELETE', `/api/v1/keys/${erin.keyId}`, tb.adminKey)).status, 200);
    await within(drained, 5000, 'the revoked key’s stream ending');
    assert.equal(ended, true);
  });
});

describe('MCP gateway reads (resources/read) of a slow or failing shared server', function () {
  this.timeout(30_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let docs: InProcessMcpServer;
  const clients: Client[] = [];

  before(async () => {
    upstream = await new AnthropicMock().start();
    docs = await new InProcessMcpServer(
      'docs',
      (mcp, res) => {
        mcp.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [] }));
        mcp.setRequestHandler(ListResourcesRequestSchema, async () => ({
          resources: [
            { uri: 'doc://slow', name: 'slow' },
            { uri: 'doc://broken', name: 'broken' },
          ],
        }));
        mcp.setRequestHandler(ReadResourceRequestSchema, async (r) => {
          if (r.params.uri === 'doc://broken') {
            res.writeHead(500, { 'content-type': 'text/plain' });
            res.end('pool exhausted: postgres://svc:hunter2@10.1.2.3:5432/docs');
            return new Promise<never>(() => undefined);
          }
          // Longer than the injection loop's limit, well within the gateway's.
          await new Promise((done) => setTimeout(done, 600));
          return { contents: [{ uri: r.params.uri, text: 'the slow page' }] };
        });
      },
      false,
      { resources: {} },
    ).start();
    tb = await startBridge(upstream.url, { AIBRIDGE_MCP_CALL_TIMEOUT_MS: '200' });
    const put = await tb.api('PUT', '/api/v1/mcp/servers/docs', tb.adminKey, {
      transport: { type: 'http', url: docs.url },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  });

  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await tb?.close();
    await docs?.stop();
    await upstream?.stop();
  });

  it("a read has the gateway's time limit, as a tool call does (not the injection loop's)", async () => {
    const { key } = await tb.addUser('reader@example.com');
    const client = await connect(tb.url, key);
    clients.push(client);
    const { resources } = await client.listResources();
    const slow = resources.find((r) => r.name.endsWith('slow'))!;
    const read = await client.readResource({ uri: slow.uri });
    assert.equal((read.contents[0] as { text?: string }).text, 'the slow page');
  });

  it("a shared server's failed read is the admins' to read: the member is told it failed", async () => {
    const { key } = await tb.addUser('reader2@example.com');
    const client = await connect(tb.url, key);
    clients.push(client);
    const { resources } = await client.listResources();
    const broken = resources.find((r) => r.name.endsWith('broken'))!;
    const err = await client.readResource({ uri: broken.uri }).then(
      () => assert.fail('expected an error'),
      (e: Error) => e,
    );
    assert.match(err.message, /docs failed: the server failed to answer/);
    assert.doesNotMatch(err.message, /10\.1\.2\.3|hunter2/);
    const items = await eventually(async () => {
      const r = await tb.api<{ items: { error: string | null }[] }>(
        'GET',
        '/api/v1/tool-calls?via=gateway',
        key,
      );
      return r.body.items.length > 0 ? r.body.items : undefined;
    });
    for (const c of items) assert.doesNotMatch(c.error ?? '', /10\.1\.2\.3|hunter2/);
  });
});
