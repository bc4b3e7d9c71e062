import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { type CallToolResult, ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { GatewayToolCall } from '../../shared/interception';
import type { BridgeEvent, GatewayToolCallEvent } from '../../shared/protocol';
import { codexHome, runClaude, runCodexExec } from '../helpers/agent-cli';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { AuthGate, everythingStdio, OAuthGate, startEverythingHttp } from '../helpers/mcp-servers';
import { testPostgres } from '../helpers/postgres';
import { ToolModelMock } from '../helpers/tool-model-mock';

const KEY = randomBytes(32).toString('base64');

type Listed = GatewayToolCall & { via: string };

/** The official SDK client, as an agent would connect it to `<bridge>/mcp` with its bridge key. */
async function connect(
  base: string,
  key: string,
  opts: { name?: string; onToolsChanged?: () => void; fetch?: typeof fetch } = {},
): Promise<Client> {
  const client = new Client(
    { name: opts.name ?? 'test-agent', version: '1.0.0' },
    opts.onToolsChanged
      ? { listChanged: { tools: { autoRefresh: false, onChanged: () => opts.onToolsChanged?.() } } }
      : {},
  );
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  await client.connect(transport);
  return client;
}

function text(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join('');
}

async function rpcError(p: Promise<unknown>): Promise<McpError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof McpError) return err;
    throw err;
  }
  throw new Error('expected a JSON-RPC error');
}

describe('the MCP gateway (<bridge>/mcp)', function () {
  this.timeout(90_000);
  let upstream: AnthropicMock;
  let web: { url: string; stop(): Promise<void> };
  let gate: AuthGate;
  let tb: TestBridge;
  let alice: { key: string; user: { id: string } };
  let bob: { key: string; user: { id: string } };
  const events: BridgeEvent[] = [];
  const clients: Client[] = [];
  const track = (c: Client): Client => {
    clients.push(c);
    return c;
  };

  before(async () => {
    upstream = await new AnthropicMock().start();
    web = await startEverythingHttp();
    gate = await new AuthGate(web.url).start();
    tb = await startBridge(upstream.url, {
      AIBRIDGE_MCP_CREDENTIALS_KEY: KEY,
      AIBRIDGE_MCP_API_STDIO: 'true',
      AIBRIDGE_MCP_GATEWAY_CALL_TIMEOUT_MS: '20000',
    });
    tb.bridge.bus.subscribe((e) => events.push(e));
    alice = await tb.addUser('alice@example.com', { team: 'a' });
    bob = await tb.addUser('bob@example.com', { team: 'b' });
    const put = async (name: string, body: unknown): Promise<void> => {
      const r = await tb.api('PUT', `/api/v1/mcp/servers/${name}`, tb.adminKey, body);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    };
    // The real reference server over stdio, with a denied tool and a short limit.
    await put('everything', everythingStdio({ tools: { deny: ['get-env'] }, timeoutMs: 1500 }));
    // The same server over Streamable HTTP, in its own process.
    await put('web', { transport: { type: 'http', url: web.url }, tools: { allow: ['echo', 'trigger-*'] } });
    // Behind a token check: each user's own credential.
    await put('gate', {
      transport: { type: 'http', url: gate.url },
      tools: { allow: ['echo'] },
      auth: { type: 'per_user' },
    });
  });

  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await tb.close();
    await gate.stop();
    await web.stop();
    await upstream.stop();
  });

  it('refuses a request without a key: 401 naming the RFC 9728 metadata, which names the resource', async () => {
    const res = await fetch(`${tb.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    assert.equal(res.status, 401);
    assert.equal(
      res.headers.get('www-authenticate'),
      `Bearer resource_metadata="${tb.url}/.well-known/oauth-protected-resource"`,
    );
    const meta = (await (await fetch(`${tb.url}/.well-known/oauth-protected-resource`)).json()) as {
      resource: string;
      authorization_servers: string[];
    };
    assert.equal(meta.resource, `${tb.url}/mcp`);
    assert.deepEqual(meta.authorization_servers, [tb.url]);
    const bad = await fetch(`${tb.url}/mcp`, {
      method: 'POST',
      headers: { authorization: 'Bearer aib_nope', 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(bad.status, 401);
    // No probe to answer here: a keyless HEAD is refused too (it reached the handler: a 500).
    const head = await fetch(`${tb.url}/mcp`, { method: 'HEAD' });
    assert.equal(head.status, 401);
  });

  it('lists the tools of every server as <server>__<tool>, without denied ones, and calls them', async () => {
    const client = track(await connect(tb.url, alice.key, { name: 'claude-code' }));
    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('everything__echo'), names.join());
    assert.ok(names.includes('everything__get-tiny-image'), names.join());
    assert.ok(!names.includes('everything__get-env'), 'a denied tool is not offered');
    assert.ok(
      names.includes('web__echo') && !names.includes('web__get-sum'),
      'web offers its allow-list only',
    );
    assert.ok(names.includes('gate__connect') && !names.includes('gate__echo'), 'gate is not connected yet');

    const echoed = (await client.callTool({
      name: 'everything__echo',
      arguments: { message: 'hi' },
    })) as CallToolResult;
    assert.equal(text(echoed), 'Echo: hi');
    const overHttp = (await client.callTool({
      name: 'web__echo',
      arguments: { message: 'there' },
    })) as CallToolResult;
    assert.equal(text(overHttp), 'Echo: there');

    // Non-text results pass through unchanged.
    const image = (await client.callTool({
      name: 'everything__get-tiny-image',
      arguments: {},
    })) as CallToolResult;
    const img = image.content.find((c) => c.type === 'image');
    assert.ok(img && img.type === 'image', JSON.stringify(image.content).slice(0, 200));
    assert.equal(img.mimeType, 'image/png');
    assert.ok(img.data.length > 100);
  });

  it('audits each call: GET /api/v1/tool-calls lists it with via "gateway", a live event, a metric', async () => {
    const listed = await eventually(async () => {
      const r = await tb.api<{ items: Listed[] }>('GET', '/api/v1/tool-calls?via=gateway', alice.key);
      const echo = r.body.items.find((c) => c.name === 'everything__echo');
      return echo ? r.body.items : undefined;
    });
    const echo = listed.find((c) => c.name === 'everything__echo')!;
    assert.equal(echo.via, 'gateway');
    assert.equal(echo.userId, alice.user.id);
    assert.equal(echo.team, 'a');
    assert.equal(echo.client, 'claude-code');
    assert.equal(echo.server, 'everything');
    assert.equal(echo.tool, 'echo');
    assert.deepEqual(echo.input, { message: 'hi' });
    assert.equal(echo.outcome, 'ok');
    assert.ok(echo.resultBytes > 0);
    assert.match(echo.sessionId ?? '', /^gw1\./);
    // Bob sees none of Alice's calls.
    const bobs = await tb.api<{ items: Listed[] }>('GET', '/api/v1/tool-calls?via=gateway', bob.key);
    assert.deepEqual(bobs.body.items, []);

    const ev = events.find(
      (e): e is GatewayToolCallEvent =>
        e.type === 'tool.call' && e.via === 'gateway' && e.name === 'web__echo',
    );
    assert.ok(ev, 'a live tool.call event');
    assert.equal(ev.userEmail, 'alice@example.com');
    assert.equal(ev.inputPreview, '{"message":"there"}');

    const metrics = await tb.bridge.metrics.registry.getSingleMetricAsString(
      'aibridge_mcp_gateway_calls_total',
    );
    assert.match(metrics, /aibridge_mcp_gateway_calls_total\{server="everything",outcome="ok"\} [2-9]/);
  });

  it('redacts secrets in the recorded arguments', async () => {
    const client = track(await connect(tb.url, alice.key));
    const secret = `sk-ant-api03-${'a'.repeat(90)}`;
    await client.callTool({ name: 'everything__echo', arguments: { message: `key ${secret}` } });
    const call = await eventually(async () => {
      const r = await tb.api<{ items: Listed[] }>('GET', '/api/v1/tool-calls?via=gateway&limit=1', alice.key);
      const c = r.body.items[0];
      return c && JSON.stringify(c.input).includes('key ') ? c : undefined;
    });
    assert.ok(!JSON.stringify(call.input).includes(secret), JSON.stringify(call.input));
    assert.match(JSON.stringify(call.input), /REDACTED/);
  });

  it("keeps at most 8 KB of a call's arguments, and none at the team's capture level none", async () => {
    // A per-user server the member never connected: nothing is called, the call is still recorded.
    // A user of their own: the other tests count Bob's and Alice's calls.
    const carol = await tb.addUser('carol@example.com', { team: 'c' });
    const client = track(await connect(tb.url, carol.key));
    const blob = 'x'.repeat(1024 * 1024);
    await client.callTool({ name: 'gate__no_such_tool', arguments: { blob } });
    const capped = await eventually(async () => {
      const r = await tb.api<{ items: Listed[] }>('GET', '/api/v1/tool-calls?via=gateway&limit=1', carol.key);
      const c = r.body.items[0];
      return c?.name === 'gate__no_such_tool' ? c : undefined;
    });
    assert.ok(
      JSON.stringify(capped.input).length < 9 * 1024,
      `${JSON.stringify(capped.input).length} bytes kept`,
    );
    assert.equal((capped.input as { truncated?: boolean }).truncated, true);
    const put = await tb.api('PUT', '/api/v1/teams/c/capture', tb.adminKey, { level: 'none' });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    try {
      await client.callTool({ name: 'everything__echo', arguments: { message: 'private words' } });
      const bare = await eventually(async () => {
        const r = await tb.api<{ items: Listed[] }>(
          'GET',
          '/api/v1/tool-calls?via=gateway&limit=1',
          carol.key,
        );
        const c = r.body.items[0];
        return c?.name === 'everything__echo' ? c : undefined;
      });
      assert.equal(bare.input, null);
      assert.equal(bare.outcome, 'ok');
    } finally {
      await tb.api('PUT', '/api/v1/teams/c/capture', tb.adminKey, { level: 'prompt' });
    }
  });

  it("keeps at most 1 KB of a call's or prompt read's name: the record, the live event and the list", async () => {
    // The name of a tool on a per-user server the member never connected is recorded as the member
    // sent it (no credential, nothing called); a prompt's name is recorded whatever the server says.
    const dave = await tb.addUser('dave@example.com', { team: 'd' });
    const client = track(await connect(tb.url, dave.key));
    const long = 'n'.repeat(1024 * 1024);
    await client.callTool({ name: `gate__${long}`, arguments: {} });
    await client.getPrompt({ name: `everything__${long}` }).catch(() => undefined);
    const calls = await eventually(async () => {
      const r = await tb.api<{ items: Listed[] }>('GET', '/api/v1/tool-calls?via=gateway&limit=5', dave.key);
      return r.body.items.length === 2 ? r.body.items : undefined;
    });
    for (const c of calls) {
      assert.ok(c.name.length <= 1025 && c.tool.length <= 1025, `${c.name.length}/${c.tool.length} kept`);
      assert.ok(c.name.endsWith('…') && c.tool.endsWith('…'));
    }
    const live = events.filter(
      (e): e is GatewayToolCallEvent => e.type === 'tool.call' && 'userId' in e && e.userId === dave.user.id,
    );
    assert.equal(live.length, 2);
    for (const e of live) assert.ok(e.name.length <= 1025, `${e.name.length} characters published`);
  });

  it('a denied or unknown tool is a JSON-RPC invalid-params error, and the session goes on', async () => {
    const client = track(await connect(tb.url, alice.key));
    for (const name of ['everything__get-env', 'everything__nope', 'nosuch__echo', 'plain']) {
      const err = await rpcError(client.callTool({ name, arguments: {} }));
      assert.equal(err.code, ErrorCode.InvalidParams, name);
    }
    const ok = (await client.callTool({
      name: 'everything__echo',
      arguments: { message: 'still' },
    })) as CallToolResult;
    assert.equal(text(ok), 'Echo: still');
  });

  it('applies the tool-call policy: a denied call is a tool result naming the rule, recorded as denied', async () => {
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [
        // Written for Claude Code's name of the server's tool: it covers the gateway's name too.
        {
          id: 'no-secret-echo',
          tool: 'mcp__everything__echo',
          argumentPattern: 'secret',
          action: 'deny',
          scope: 'org',
        },
      ],
    });
    assert.equal(put.status, 200);
    try {
      const client = track(await connect(tb.url, alice.key));
      const denied = (await client.callTool({
        name: 'everything__echo',
        arguments: { message: 'the secret plan' },
      })) as CallToolResult;
      assert.equal(denied.isError, true);
      assert.match(text(denied), /^AI Bridge blocked everything__echo: .*\(rule no-secret-echo\)$/);
      const fine = (await client.callTool({
        name: 'everything__echo',
        arguments: { message: 'hi' },
      })) as CallToolResult;
      assert.equal(text(fine), 'Echo: hi');
      const call = await eventually(async () => {
        const r = await tb.api<{ items: Listed[] }>(
          'GET',
          '/api/v1/tool-calls?via=gateway&limit=5',
          alice.key,
        );
        return r.body.items.find((c) => c.outcome === 'denied');
      });
      assert.deepEqual(call.policy, { rule: 'no-secret-echo', action: 'deny' });
    } finally {
      await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: [] });
    }
  });

  it("a member's long tool name cannot stall the bridge on a tool rule's glob", async () => {
    // `mcp__*__*delete*` on V8's backtracking engine was quadratic in the name: 100,000 underscores
    // stopped the event loop for seconds (4 MB, the gateway's body limit: hours), for every user.
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'no-deletes', tool: 'mcp__*__*delete*', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    try {
      const client = track(await connect(tb.url, alice.key));
      const started = performance.now();
      const err = await rpcError(
        client.callTool({ name: `everything__${'_'.repeat(100_000)}`, arguments: {} }),
      );
      const ms = performance.now() - started;
      assert.equal(err.code, ErrorCode.InvalidParams);
      assert.ok(ms < 1000, `the call took ${Math.round(ms)} ms`);
      const denied = (await client.callTool({
        name: 'everything__delete_all',
        arguments: {},
      })) as CallToolResult;
      assert.match(text(denied), /\(rule no-deletes\)$/);
    } finally {
      await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: [] });
    }
  });

  it('a server that hangs past its limit gets the timeout error; other tools keep working', async () => {
    const client = track(await connect(tb.url, alice.key));
    const started = Date.now();
    const slow = client.callTool(
      { name: 'everything__trigger-long-running-operation', arguments: { duration: 10, steps: 10 } },
      undefined,
      { timeout: 30_000 },
    );
    const meanwhile = (await client.callTool({
      name: 'web__echo',
      arguments: { message: 'free' },
    })) as CallToolResult;
    assert.equal(text(meanwhile), 'Echo: free');
    const err = await rpcError(slow);
    assert.equal(err.code, ErrorCode.RequestTimeout);
    assert.match(err.message, /1500 ms/);
    assert.ok(Date.now() - started < 8000, 'answered at the server limit, not when the tool finished');
    const rec = await eventually(async () => {
      const r = await tb.api<{ items: Listed[] }>(
        'GET',
        '/api/v1/tool-calls?via=gateway&tool=everything__trigger-long-running-operation',
        alice.key,
      );
      return r.body.items[0];
    });
    assert.equal(rec.outcome, 'timeout');
  });

  it('a server that dies mid-call gets an internal error naming it; other tools keep working', async () => {
    const doomed = await startEverythingHttp();
    let stopped = false;
    try {
      const put = await tb.api('PUT', '/api/v1/mcp/servers/doomed', tb.adminKey, {
        transport: { type: 'http', url: doomed.url },
        tools: { allow: ['trigger-long-running-operation'] },
      });
      assert.equal(put.status, 200);
      const client = track(await connect(tb.url, alice.key));
      const call = client.callTool(
        { name: 'doomed__trigger-long-running-operation', arguments: { duration: 20, steps: 20 } },
        undefined,
        { timeout: 60_000 },
      );
      // Caught at once: the call fails while the test is still waiting for it to start.
      const failed = rpcError(call);
      await eventually(async () => ((await gatewayInFlight(tb)) > 0 ? true : undefined));
      const killedAt = Date.now();
      stopped = true;
      await doomed.stop();
      const err = await failed;
      assert.equal(err.code, ErrorCode.InternalError);
      // Refused at once (fetch failed), or found gone by a ping while the call waited: why is for
      // admins (a shared server's failure may carry what it answered).
      assert.match(err.message, /doomed failed: the server failed to answer \(admins are told why\)/);
      assert.ok(Date.now() - killedAt < 10_000, 'answered when the server died, not at a timeout');
      const ok = (await client.callTool({
        name: 'web__echo',
        arguments: { message: 'alive' },
      })) as CallToolResult;
      assert.equal(text(ok), 'Echo: alive');
    } finally {
      if (!stopped) await doomed.stop();
      await tb.api('DELETE', '/api/v1/mcp/servers/doomed', tb.adminKey);
    }
  });

  it('a key revoked while its tool call runs ends the call at once, not when the tool finishes', async () => {
    const mine = await tb.addUser('gateway-revoked@example.com');
    const client = track(await connect(tb.url, mine.key));
    const call = client.callTool(
      { name: 'web__trigger-long-running-operation', arguments: { duration: 15, steps: 15 } },
      undefined,
      { timeout: 60_000 },
    );
    const failed = call.then(
      () => 'completed',
      (err: unknown) => String(err),
    );
    await eventually(async () => ((await gatewayInFlight(tb)) > 0 ? true : undefined));
    const revokedAt = Date.now();
    assert.equal((await tb.api('DELETE', `/api/v1/keys/${mine.keyId}`, tb.adminKey)).status, 200);
    assert.match(await failed, /has been revoked\. The call was ended\./);
    assert.ok(Date.now() - revokedAt < 5000, 'ended by the revocation, not by the tool (15 s)');
    await eventually(async () => ((await gatewayInFlight(tb)) === 0 ? true : undefined));
  });

  it("passes the client's cancellation through: the upstream call is aborted", async () => {
    const client = track(await connect(tb.url, alice.key));
    const abort = new AbortController();
    const call = client.callTool(
      { name: 'web__trigger-long-running-operation', arguments: { duration: 15, steps: 15 } },
      undefined,
      { signal: abort.signal, timeout: 60_000 },
    );
    await eventually(async () => ((await gatewayInFlight(tb)) > 0 ? true : undefined));
    const cancelledAt = Date.now();
    abort.abort('the user pressed escape');
    await assert.rejects(call);
    const rec = await eventually(async () => {
      const r = await tb.api<{ items: Listed[] }>(
        'GET',
        '/api/v1/tool-calls?via=gateway&tool=web__trigger-long-running-operation',
        alice.key,
      );
      return r.body.items[0];
    });
    assert.equal(rec.outcome, 'cancelled');
    assert.ok(Date.now() - cancelledAt < 5000, 'ended by the cancellation, not by the tool');
    assert.equal(await gatewayInFlight(tb), 0);
  });

  it('a user without a credential gets a tool result telling how to connect; with one, the tools', async () => {
    const client = track(await connect(tb.url, bob.key));
    const r = (await client.callTool({ name: 'gate__connect', arguments: {} })) as CallToolResult;
    assert.equal(r.isError, true);
    assert.match(text(r), new RegExp(`PUT ${tb.url}/api/v1/me/mcp/gate/credentials`));
    // Any tool of that server answers the same, never a protocol error.
    const r2 = (await client.callTool({ name: 'gate__echo', arguments: { message: 'x' } })) as CallToolResult;
    assert.equal(r2.isError, true);

    const token = `bob-${randomBytes(8).toString('hex')}`;
    gate.tokens.add(token);
    const stored = await tb.api('PUT', '/api/v1/me/mcp/gate/credentials', bob.key, { token });
    assert.equal(stored.status, 204);
    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('gate__echo') && !names.includes('gate__connect'), names.join());
    const echoed = (await client.callTool({
      name: 'gate__echo',
      arguments: { message: 'mine' },
    })) as CallToolResult;
    assert.equal(text(echoed), 'Echo: mine');
    assert.ok(gate.seen.includes(token), "the call ran with Bob's own token");
    const outcomes = await eventually(async () => {
      const r = await tb.api<{ items: Listed[] }>(
        'GET',
        '/api/v1/tool-calls?via=gateway&server=gate',
        bob.key,
      );
      return r.body.items.length === 3 ? r.body.items.map((c) => c.outcome) : undefined;
    });
    assert.deepEqual(outcomes, ['ok', 'no_credential', 'no_credential']);
  });

  it("an OAuth server's connect result is the user's own authorisation link; once authorised, its tools", async () => {
    const oauth = await new OAuthGate(web.url).start();
    try {
      const put = await tb.api('PUT', '/api/v1/mcp/servers/wiki', tb.adminKey, {
        transport: { type: 'http', url: oauth.url },
        tools: { allow: ['echo'] },
        auth: { type: 'per_user', oauth: {} },
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      const erin = await tb.addUser('erin@example.com');
      const client = track(await connect(tb.url, erin.key));
      const r = (await client.callTool({ name: 'wiki__connect', arguments: {} })) as CallToolResult;
      assert.equal(r.isError, true);
      const link = new RegExp(`${oauth.origin}/authorize\\?\\S+`).exec(text(r))?.[0];
      assert.ok(link, text(r));
      // The user's browser follows the link; the server sends it back to the bridge with a code.
      const approved = await fetch(link, { redirect: 'manual' });
      const back = approved.headers.get('location') ?? '';
      assert.ok(back.startsWith(`${tb.url}/api/v1/mcp/oauth/callback?`), back);
      const confirm = await fetch(back);
      assert.equal(confirm.status, 200);
      const html = await confirm.text();
      assert.match(html, /Connect wiki to erin@example\.com\?/, 'the page names the account it connects');
      const field = (n: string): string =>
        (new RegExp(`name="${n}" value="([^"]*)"`).exec(html)?.[1] ?? '').replaceAll('&amp;', '&');
      const done = await fetch(`${tb.url}/api/v1/mcp/oauth/callback`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ state: field('state'), code: field('code') }),
      });
      assert.equal(done.status, 200);
      assert.match(await done.text(), /Connected/);
      const names = (await client.listTools()).tools.map((t) => t.name);
      assert.ok(names.includes('wiki__echo') && !names.includes('wiki__connect'), names.join());
      const echoed = (await client.callTool({
        name: 'wiki__echo',
        arguments: { message: 'sso' },
      })) as CallToolResult;
      assert.equal(text(echoed), 'Echo: sso');
    } finally {
      await tb.api('DELETE', '/api/v1/mcp/servers/wiki', tb.adminKey);
      await oauth.stop();
    }
  });

  it('notifies tools/list_changed on the open stream when an admin changes a server', async () => {
    let changed = 0;
    const client = track(await connect(tb.url, alice.key, { onToolsChanged: () => changed++ }));
    // The SDK client opens its notification stream (GET /mcp) after initializing.
    await new Promise((r) => setTimeout(r, 300));
    const put = await tb.api('PUT', '/api/v1/mcp/servers/web', tb.adminKey, {
      transport: { type: 'http', url: web.url },
      tools: { allow: ['echo', 'get-sum', 'trigger-*'] },
    });
    assert.equal(put.status, 200);
    await eventually(async () => (changed > 0 ? true : undefined));
    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('web__get-sum'), names.join());
  });

  it('offers resources and prompts, prefixed by server, and audits each read', async () => {
    const toolCallsMetric = (): Promise<string> =>
      tb.bridge.metrics.registry.getSingleMetricAsString('aibridge_mcp_gateway_calls_total');
    const metricBefore = await toolCallsMetric();
    const client = track(await connect(tb.url, alice.key));
    const { resources } = await client.listResources();
    const res = resources.find((r) => r.uri.startsWith('aibridge://everything/'));
    assert.ok(res, JSON.stringify(resources.slice(0, 3)));
    assert.match(res.name, /^everything__/);
    const read = await client.readResource({ uri: res.uri });
    assert.ok(read.contents.length > 0);
    assert.equal(read.contents[0]!.uri.startsWith('aibridge://everything/'), true);
    const { prompts } = await client.listPrompts();
    const simple = prompts.find((p) => p.name.startsWith('everything__'));
    assert.ok(simple, JSON.stringify(prompts));
    const got = await client.getPrompt({
      name: simple.name,
      arguments: Object.fromEntries(
        (simple.arguments ?? []).filter((a) => a.required).map((a) => [a.name, 'x']),
      ),
    });
    assert.ok(got.messages.length > 0);
    // A read the server refuses still reaches the record, with its error.
    await assert.rejects(client.readResource({ uri: 'aibridge://everything/demo%3A%2F%2Fnone' }));

    // Reads are audited like tool calls, `kind` saying which, and reach the live feed.
    const listed = await eventually(async () => {
      const r = await tb.api<{ items: Listed[] }>('GET', '/api/v1/tool-calls?via=gateway', alice.key);
      const reads = r.body.items.filter((c) => c.kind !== undefined);
      return reads.length >= 3 ? reads : undefined;
    });
    const resource = listed.find((c) => c.kind === 'resource' && c.name === res.uri);
    assert.ok(resource, JSON.stringify(listed));
    assert.equal(resource.server, 'everything');
    assert.equal(resource.tool, decodeURIComponent(res.uri.slice('aibridge://everything/'.length)));
    assert.equal(resource.outcome, 'ok');
    assert.ok(resource.resultBytes > 0);
    assert.equal(resource.userId, alice.user.id);
    const prompt = listed.find((c) => c.kind === 'prompt');
    assert.ok(prompt, JSON.stringify(listed));
    assert.equal(prompt.name, simple.name);
    assert.equal(prompt.tool, simple.name.slice('everything__'.length));
    assert.equal(prompt.outcome, 'ok');
    const refused = listed.find((c) => c.kind === 'resource' && c.tool === 'demo://none');
    assert.ok(refused, JSON.stringify(listed));
    assert.equal(refused.outcome, 'error');
    assert.ok(refused.error);
    assert.ok(
      events.some((e) => e.type === 'tool.call' && e.via === 'gateway' && 'kind' in e && e.kind === 'prompt'),
      'a live tool.call event for the prompt read',
    );
    // The tool-call metric still counts tool calls only.
    assert.equal(await toolCallsMetric(), metricBefore);
  });

  it("counts each tool call against the user's rate limit: over it, 429 with retry-after", async () => {
    const dana = await tb.addUser('dana@example.com');
    const limit = await tb.api('PUT', '/api/v1/rate-limits', tb.adminKey, {
      scope: 'user',
      subject: 'dana@example.com',
      rpm: 2,
    });
    assert.ok(limit.status === 200 || limit.status === 201, JSON.stringify(limit.body));
    const client = track(await connect(tb.url, dana.key));
    // Listing is not a call: it never counts.
    for (let i = 0; i < 3; i++) await client.listTools();
    for (let i = 0; i < 2; i++)
      await client.callTool({ name: 'everything__echo', arguments: { message: `n${i}` } });
    await assert.rejects(
      client.callTool({ name: 'everything__echo', arguments: { message: 'one too many' } }),
      /Rate limit of 2 requests per minute/,
    );
    const res = await fetch(`${tb.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${dana.key}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { name: 'everything__echo', arguments: {} },
      }),
    });
    assert.equal(res.status, 429);
    assert.ok(Number(res.headers.get('retry-after')) >= 1);

    // Reading a resource reaches the server as a call does, and counts the same.
    const reader = await tb.addUser('reader@example.com');
    await tb.api('PUT', '/api/v1/rate-limits', tb.adminKey, {
      scope: 'user',
      subject: 'reader@example.com',
      rpm: 2,
    });
    const rc = track(await connect(tb.url, reader.key));
    // Listing resources (or prompts) asks every server: it counts as one call too.
    const [first] = (await rc.listResources()).resources;
    assert.ok(first, 'the everything server offers resources');
    await rc.readResource({ uri: first.uri });
    await assert.rejects(rc.readResource({ uri: first.uri }), /Rate limit of 2 requests per minute/);
    await assert.rejects(rc.listResources(), /Rate limit of 2 requests per minute/);
    await assert.rejects(rc.listPrompts(), /Rate limit of 2 requests per minute/);
    // The tool list is the bridge's own: never counted.
    assert.ok((await rc.listTools()).tools.length > 0);
  });

  it('answers bad input with the JSON-RPC errors the spec defines, never hanging', async () => {
    const post = (body: string, key = alice.key, headers: Record<string, string> = {}) =>
      fetch(`${tb.url}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': '2025-06-18',
          ...headers,
        },
        body,
      });
    const malformed = await post('{"jsonrpc": "2.0", "id": 1, "method": ');
    assert.equal(malformed.status, 400);
    assert.equal(((await malformed.json()) as { error: { code: number } }).error.code, ErrorCode.ParseError);

    // Nesting deeper than AIBRIDGE_MAX_JSON_DEPTH is refused before anything parses it.
    const deep = await post(`${'['.repeat(1000)}${']'.repeat(1000)}`);
    assert.equal(deep.status, 400);
    assert.equal(((await deep.json()) as { error: { code: number } }).error.code, ErrorCode.ParseError);

    // A listing whose params are one object of 300,000 keys: the SDK's validation took 0.85 s of
    // the event loop for each. More than 50,000 keys is refused before anything parses it.
    const keys = `{${Array.from({ length: 50_001 }, (_, i) => `"k${i}":0`).join(',')}}`;
    const bomb = await post(`{"jsonrpc":"2.0","id":6,"method":"tools/list","params":${keys}}`);
    assert.equal(bomb.status, 400);
    const bombError = ((await bomb.json()) as { error: { code: number; message: string } }).error;
    assert.equal(bombError.code, ErrorCode.ParseError);
    assert.match(bombError.message, /more than 50000 object keys/);

    const unknown = await post(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/frobnicate' }));
    const unknownText = await unknown.text();
    assert.match(unknownText, new RegExp(`"code":${ErrorCode.MethodNotFound}`), unknownText);

    const huge = await post(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 8,
        method: 'tools/call',
        params: { name: 'everything__echo', arguments: { message: 'x'.repeat(5 * 1024 * 1024) } },
      }),
    );
    assert.equal(huge.status, 413);
    assert.equal(((await huge.json()) as { error: { code: number } }).error.code, ErrorCode.InvalidRequest);

    // A session id this gateway never issued, or another user's: 404, initialize again.
    const client = track(await connect(tb.url, alice.key));
    const aliceSession = (client.transport as StreamableHTTPClientTransport).sessionId!;
    const stolen = await post(JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }), bob.key, {
      'mcp-session-id': aliceSession,
    });
    assert.equal(stolen.status, 404);
    const forged = await post(JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }), bob.key, {
      'mcp-session-id': 'made-up',
    });
    assert.equal(forged.status, 404);
  });
});

/** Calls running on the bridge's gateway (its in-flight gauge). */
async function gatewayInFlight(tb: TestBridge): Promise<number> {
  const m = await tb.bridge.metrics.registry.getSingleMetricAsString('aibridge_mcp_gateway_calls_in_flight');
  return Number(/aibridge_mcp_gateway_calls_in_flight (\d+)/.exec(m)?.[1] ?? '0');
}

describe('the MCP gateway on two replicas sharing one PostgreSQL store', function () {
  this.timeout(90_000);
  let upstream: AnthropicMock;
  let a: TestBridge;
  let b: TestBridge;

  before(async () => {
    upstream = await new AnthropicMock().start();
    const env = {
      AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('mcpgateway'),
      AIBRIDGE_KEY_HASH_SECRET: randomBytes(32).toString('base64url'),
      AIBRIDGE_MCP_CREDENTIALS_KEY: KEY,
      AIBRIDGE_MCP_API_STDIO: 'true',
    };
    a = await startBridge(upstream.url, env);
    // The same data dir: the second replica reads the admin key the first one wrote there.
    b = await startBridge(upstream.url, env, a.dataDir);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await upstream.stop();
  });

  it('serves one MCP session alternately from either replica', async () => {
    const put = await a.api('PUT', '/api/v1/mcp/servers/everything', a.adminKey, everythingStdio());
    assert.equal(put.status, 200);
    const user = await a.addUser('carol@example.com', { team: 'c' });
    // The other replica learns of the server through the change feed.
    await eventually(async () => {
      await b.bridge.mcp.ready();
      const s = await b.api<{ status: { state: string } }>(
        'GET',
        '/api/v1/mcp/servers/everything',
        b.adminKey,
      );
      return s.body.status?.state === 'ready' ? true : undefined;
    });
    // A notification stream held by replica B hears of an admin change made on replica A.
    let changed = 0;
    const watcher = await connect(b.url, user.key, { onToolsChanged: () => changed++ });
    await new Promise((r) => setTimeout(r, 300));
    const again = await a.api(
      'PUT',
      '/api/v1/mcp/servers/everything',
      a.adminKey,
      everythingStdio({ tools: { deny: ['get-env'] } }),
    );
    assert.equal(again.status, 200);
    await eventually(async () => (changed > 0 ? true : undefined), { timeoutMs: 15_000 });
    await watcher.close();

    const hosts: string[] = [];
    let turn = 0;
    // Every request of the session goes to the next replica in turn.
    const alternate: typeof fetch = (input, init) => {
      const target = turn++ % 2 === 0 ? a.url : b.url;
      hosts.push(target);
      const u = new URL(input instanceof Request ? input.url : String(input));
      return fetch(`${target}${u.pathname}${u.search}`, init);
    };
    const client = await connect(a.url, user.key, { name: 'codex', fetch: alternate });
    try {
      for (let i = 0; i < 4; i++) {
        const r = (await client.callTool({
          name: 'everything__echo',
          arguments: { message: `m${i}` },
        })) as CallToolResult;
        assert.equal(text(r), `Echo: m${i}`);
      }
      assert.ok(hosts.includes(a.url) && hosts.includes(b.url), 'both replicas served the session');
      // Both replicas' calls are in the one store, with the client named at initialize.
      const listed = await eventually(async () => {
        const r = await b.api<{ items: Listed[] }>('GET', '/api/v1/tool-calls?via=gateway', user.key);
        return r.body.items.length === 4 ? r.body.items : undefined;
      });
      assert.deepEqual(new Set(listed.map((c) => c.client)), new Set(['codex']));
      assert.equal(new Set(listed.map((c) => c.sessionId)).size, 1);
    } finally {
      await client.close();
    }
  });

  it("a user's token replaced or removed through one replica is the one the other replica uses within a second", async () => {
    const web = await startEverythingHttp();
    const gate = await new AuthGate(web.url).start();
    const clients: Client[] = [];
    try {
      const put = await a.api('PUT', '/api/v1/mcp/servers/gate2', a.adminKey, {
        transport: { type: 'http', url: gate.url },
        tools: { allow: ['echo'] },
        auth: { type: 'per_user' },
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      const user = await a.addUser('dave@example.com', { team: 'd' });
      const echo = async (c: Client, message: string): Promise<CallToolResult> =>
        (await c.callTool({ name: 'gate2__echo', arguments: { message } })) as CallToolResult;
      const old = `old-${randomBytes(8).toString('hex')}`;
      gate.tokens.add(old);
      assert.equal(
        (await a.api('PUT', '/api/v1/me/mcp/gate2/credentials', user.key, { token: old })).status,
        204,
      );
      // Replica B connects to the server with the user's token, and keeps that connection.
      const onB = await connect(b.url, user.key);
      clients.push(onB);
      await eventually(async () => text(await echo(onB, 'first')) === 'Echo: first', {
        what: 'replica B to know the server and the credential',
      });
      assert.equal(gate.seen.at(-1), old);

      // The user replaces the token through A (the old one was revoked at the server).
      const fresh = `new-${randomBytes(8).toString('hex')}`;
      gate.tokens.add(fresh);
      gate.tokens.delete(old);
      assert.equal(
        (await a.api('PUT', '/api/v1/me/mcp/gate2/credentials', user.key, { token: fresh })).status,
        204,
      );
      await eventually(async () => text(await echo(onB, 'second')) === 'Echo: second', {
        what: 'replica B to call with the new token',
        timeoutMs: 1000,
      });
      assert.equal(gate.seen.at(-1), fresh);

      // Removed through A: replica B no longer calls the server for this user.
      assert.equal((await a.api('DELETE', '/api/v1/me/mcp/gate2/credentials', user.key)).status, 204);
      const mine = async (): Promise<{ state: string } | undefined> =>
        (
          await b.api<{ items: { name: string; state: string }[] }>('GET', '/api/v1/me/mcp', user.key)
        ).body.items.find((s) => s.name === 'gate2');
      await eventually(async () => (await mine())?.state === 'not_connected', {
        what: "replica B to drop the user's connection",
        timeoutMs: 1000,
      });
      const seen = gate.seen.length;
      const r = await echo(onB, 'third');
      assert.equal(r.isError, true);
      assert.equal(gate.seen.length, seen, 'the server was not called');
    } finally {
      for (const c of clients) await c.close().catch(() => undefined);
      await a.api('DELETE', '/api/v1/mcp/servers/gate2', a.adminKey);
      await gate.stop();
      await web.stop();
    }
  });
});

const GATEWAY_ECHO = 'mcp__aibridge__everything__echo';

describe('the real claude CLI with the MCP gateway in its MCP config', function () {
  this.timeout(120_000);
  let mock: ToolModelMock;
  let tb: TestBridge;

  before(async () => {
    mock = await new ToolModelMock().start();
    // The model calls the gateway's echo as Claude Code names it, and answers with its result.
    mock.brain = (v) => {
      if (v.results.length > 0) return { text: `Tool said: ${v.results.map((r) => r.text).join(' | ')}` };
      if (v.tools.includes(GATEWAY_ECHO))
        return {
          text: 'Calling.',
          calls: [{ name: GATEWAY_ECHO, input: { message: 'through the gateway' } }],
        };
      return { text: 'No tools offered.' };
    };
    tb = await startBridge(mock.url, { AIBRIDGE_MCP_CREDENTIALS_KEY: KEY, AIBRIDGE_MCP_API_STDIO: 'true' });
    const put = await tb.api('PUT', '/api/v1/mcp/servers/everything', tb.adminKey, everythingStdio());
    assert.equal(put.status, 200);
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  it('calls mcp__aibridge__everything__echo through the gateway, audited with the user', async () => {
    const dev = await tb.addUser('claude-gateway@example.com', { team: 'agents' });
    const home = await tempDir('aibridge-claude-home-');
    const config = path.join(home, 'mcp.json');
    await fs.writeFile(
      config,
      JSON.stringify({
        mcpServers: {
          aibridge: { type: 'http', url: `${tb.url}/mcp`, headers: { Authorization: `Bearer ${dev.key}` } },
        },
      }),
    );
    const res = await runClaude({ bridgeUrl: tb.url, key: dev.key, home }, [
      '-p',
      'Echo something',
      '--mcp-config',
      config,
      '--allowedTools',
      GATEWAY_ECHO,
    ]);
    assert.match(res.stdout, /Tool said: Echo: through the gateway/);
    const calls = await eventually(async () => {
      const r = await tb.api<{ items: Listed[] }>('GET', '/api/v1/tool-calls?via=gateway', dev.key);
      return r.body.items.length > 0 ? r.body.items : undefined;
    });
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.name, 'everything__echo');
    assert.equal(calls[0]!.userEmail, 'claude-gateway@example.com');
    assert.equal(calls[0]!.team, 'agents');
    assert.equal(calls[0]!.outcome, 'ok');
    assert.match(calls[0]!.client, /claude/i);
    assert.deepEqual(calls[0]!.input, { message: 'through the gateway' });
  });
});

describe('the real codex CLI with the MCP gateway in its config', function () {
  this.timeout(120_000);
  let mock: ToolModelMock;
  let tb: TestBridge;
  const seenTools: string[][] = [];

  before(async () => {
    mock = await new ToolModelMock().start();
    mock.brain = (v) => {
      seenTools.push(v.tools);
      // Codex offers MCP tools in a Responses `namespace` tool, `mcp__aibridge`, each by its own name.
      const echo = v.tools.includes('mcp__aibridge');
      if (v.results.length > 0) return { text: `Tool said: ${v.results.map((r) => r.text).join(' | ')}` };
      if (echo)
        return {
          text: 'Calling.',
          calls: [
            { name: 'everything__echo', namespace: 'mcp__aibridge', input: { message: 'codex via gateway' } },
          ],
        };
      return { text: 'No tools offered.' };
    };
    tb = await startBridge(mock.url, {
      AIBRIDGE_OPENAI_BASE_URL: `${mock.url}/v1`,
      AIBRIDGE_MCP_CREDENTIALS_KEY: KEY,
      AIBRIDGE_MCP_API_STDIO: 'true',
    });
    const put = await tb.api('PUT', '/api/v1/mcp/servers/everything', tb.adminKey, everythingStdio());
    assert.equal(put.status, 200);
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  it('codex exec calls the gateway tool, audited with the user and client', async () => {
    const dev = await tb.addUser('codex-gateway@example.com', { team: 'agents' });
    const home = await codexHome(`${tb.url}/openai/v1`, {
      extra: [
        'approval_policy = "never"',
        '',
        '[mcp_servers.aibridge]',
        `url = "${tb.url}/mcp"`,
        'bearer_token_env_var = "AIBRIDGE_KEY"',
      ],
    });
    const res = await runCodexExec({ home, key: dev.key, env: { AIBRIDGE_KEY: dev.key } }, 'Echo something');
    assert.match(
      res.stdout,
      /Tool said:[\s\S]*Echo: codex via gateway/,
      `${res.stdout}\n${JSON.stringify(seenTools)}`,
    );
    const calls = await eventually(async () => {
      const r = await tb.api<{ items: Listed[] }>('GET', '/api/v1/tool-calls?via=gateway', dev.key);
      return r.body.items.length > 0 ? r.body.items : undefined;
    });
    assert.equal(calls[0]!.name, 'everything__echo');
    assert.equal(calls[0]!.userEmail, 'codex-gateway@example.com');
    assert.match(calls[0]!.client, /codex/i);
    assert.equal(calls[0]!.outcome, 'ok');
  });
});
