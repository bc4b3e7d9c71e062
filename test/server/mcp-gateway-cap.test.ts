import assert from 'node:assert/strict';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  ErrorCode,
  ListResourcesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { ConfigError, loadConfig } from '../../server/config';
import { CallSlots } from '../../server/gateway/call-slots';
import type { GatewayToolCall } from '../../shared/interception';
import type { BridgeEvent, GatewayToolCallEvent } from '../../shared/protocol';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { connectGateway } from '../helpers/gateway-client';
import { InProcessMcpServer } from '../helpers/mcp-servers';
import { testPostgres } from '../helpers/postgres';

const CAP = 3;
const TOO_MANY = { reason: 'too_many_calls', limit: CAP };

interface Holding {
  server: InProcessMcpServer;
  /** Lets every held call answer. */
  release(): void;
  /** Calls (and reads) the server started whose tag (or URI) starts with `prefix`. */
  count(prefix: string): number;
}

/**
 * An MCP server whose `hold` tool runs until the test releases it (or its request goes away), so a
 * test decides how many calls are running; `fail` fails at once. It notes each call it started.
 */
function holdingServer(): Holding {
  const started: string[] = [];
  const waiting = new Set<() => void>();
  const server = new InProcessMcpServer(
    'holding',
    (mcp) => {
      mcp.setRequestHandler(ListToolsRequestSchema, async () => ({
        tools: ['hold', 'fail'].map((name) => ({ name, inputSchema: { type: 'object' as const } })),
      }));
      mcp.setRequestHandler(CallToolRequestSchema, async (r, extra) => {
        const tag = String(r.params.arguments?.tag);
        started.push(tag);
        if (r.params.name === 'fail') throw new McpError(ErrorCode.InvalidParams, `no ${tag}`);
        await new Promise<void>((done) => {
          waiting.add(done);
          extra.signal.addEventListener('abort', () => done());
        });
        return { content: [{ type: 'text' as const, text: `held ${tag}` }] };
      });
      mcp.setRequestHandler(ListResourcesRequestSchema, async () => ({
        resources: [{ uri: 'doc://page', name: 'page' }],
      }));
      mcp.setRequestHandler(ReadResourceRequestSchema, async (r) => {
        started.push(r.params.uri);
        return { contents: [{ uri: r.params.uri, text: 'the page' }] };
      });
    },
    false,
    { resources: {} },
  );
  return {
    server,
    release() {
      for (const done of waiting) done();
      waiting.clear();
    },
    count: (prefix) => started.filter((t) => t.startsWith(prefix)).length,
  };
}

const connect = connectGateway;

async function rpcError(p: Promise<unknown>): Promise<McpError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof McpError) return err;
    throw err;
  }
  throw new Error('expected a JSON-RPC error');
}

/** `p`, or a rejection naming what did not settle within `ms` (a call that was run, not refused). */
function within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The JSON-RPC error a call answers at once; a call that runs instead fails the test. */
function refusal(p: Promise<unknown>): Promise<McpError> {
  return within(rpcError(p), 'the refusal');
}

function text(r: unknown): string {
  return (r as CallToolResult).content.map((c) => (c.type === 'text' ? c.text : '')).join('');
}

interface RpcAnswer {
  id: number;
  result?: { content?: { type: string; text?: string }[]; tools?: unknown[] };
  error?: { code: number; message: string; data?: unknown };
}

/** A raw POST of JSON-RPC messages to the gateway, its SSE answers read one by one as they come. */
async function post(
  base: string,
  key: string,
  messages: unknown[],
  signal?: AbortSignal,
): Promise<{ next(): Promise<RpcAnswer> }> {
  const res = await fetch(`${base}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify(messages),
    ...(signal ? { signal } : {}),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  const queue: RpcAnswer[] = [];
  return {
    async next() {
      for (;;) {
        if (queue.length > 0) return queue.shift()!;
        const { done, value } = await reader.read();
        if (done) throw new Error('the stream ended');
        buffered += value;
        let end = buffered.indexOf('\n\n');
        while (end >= 0) {
          const data = buffered
            .slice(0, end)
            .split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).trim())
            .join('');
          if (data) queue.push(JSON.parse(data) as RpcAnswer);
          buffered = buffered.slice(end + 2);
          end = buffered.indexOf('\n\n');
        }
      }
    },
  };
}

function holdCall(id: number, tag: string, server = 'slow'): unknown {
  return {
    jsonrpc: '2.0',
    id,
    method: 'tools/call',
    params: { name: `${server}__hold`, arguments: { tag } },
  };
}

describe('the MCP gateway: calls one user may run at once (AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER)', function () {
  this.timeout(60_000);
  let upstream: AnthropicMock;
  let mcp: Holding;
  let tb: TestBridge;
  let alice: { key: string; user: { id: string } };
  let bob: { key: string; user: { id: string } };
  const events: GatewayToolCallEvent[] = [];
  const clients: Client[] = [];
  const track = (c: Client): Client => {
    clients.push(c);
    return c;
  };
  /** Alice's calls that ended (each one's event is published as it frees its slot). */
  const ended = (name: string, outcome: GatewayToolCall['outcome']): number =>
    events.filter((e) => e.userId === alice.user.id && e.name === name && e.outcome === outcome).length;

  before(async () => {
    upstream = await new AnthropicMock().start();
    mcp = holdingServer();
    await mcp.server.start();
    tb = await startBridge(upstream.url, { AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER: String(CAP) });
    tb.bridge.bus.subscribe((e: BridgeEvent) => {
      if (e.type === 'tool.call' && e.via === 'gateway') events.push(e);
    });
    alice = await tb.addUser('cap-alice@example.com');
    bob = await tb.addUser('cap-bob@example.com');
    for (const [name, extra] of [
      ['slow', {}],
      ['slower', { timeoutMs: 300 }],
    ] as const) {
      const put = await tb.api('PUT', `/api/v1/mcp/servers/${name}`, tb.adminKey, {
        transport: { type: 'http', url: mcp.server.url },
        ...extra,
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
    }
  });

  afterEach(() => mcp.release());

  after(async () => {
    mcp?.release();
    for (const c of clients) await c.close().catch(() => undefined);
    await tb?.close();
    await mcp?.server.stop();
    await upstream?.stop();
  });

  /** Alice runs `CAP` held calls (all reach the server) and one more is refused; then releases them. */
  async function assertCapHolds(prefix: string): Promise<void> {
    const client = track(await connect(tb.url, alice.key));
    const running = Array.from({ length: CAP }, (_, i) =>
      client.callTool({ name: 'slow__hold', arguments: { tag: `${prefix}${i}` } }),
    );
    await eventually(() => mcp.count(prefix) === CAP, {
      what: `${CAP} calls running (fewer: a slot was never freed)`,
    });
    const refused = await refusal(
      client.callTool({ name: 'slow__hold', arguments: { tag: `${prefix}-over` } }),
    );
    assert.equal(refused.code, ErrorCode.InvalidRequest);
    assert.deepEqual(refused.data, TOO_MANY);
    mcp.release();
    for (const r of await Promise.all(running)) assert.match(text(r), /^held /);
  }

  it("refuses a member's call past the cap at once, without reaching the server, while another member's runs", async () => {
    const a = track(await connect(tb.url, alice.key));
    const held = Array.from({ length: CAP }, (_, i) =>
      a.callTool({ name: 'slow__hold', arguments: { tag: `a${i}` } }),
    );
    await eventually(() => mcp.count('a') === CAP, { what: "Alice's calls running" });

    const err = await refusal(a.callTool({ name: 'slow__hold', arguments: { tag: 'x-over' } }));
    assert.equal(err.code, ErrorCode.InvalidRequest);
    assert.deepEqual(err.data, TOO_MANY);
    // What the client's SDK (and so Claude Code) shows the agent.
    assert.match(
      err.message,
      /^MCP error -32600: Too many MCP gateway calls at once: 3 of yours are already running on this bridge, so this call was not run\. Retry it when one of them has finished\.$/,
    );
    // A resource read reaches a server too, and takes a slot like a tool call.
    const read = await refusal(
      a.readResource({ uri: `aibridge://slow/${encodeURIComponent('doc://page')}` }),
    );
    assert.deepEqual(read.data, TOO_MANY);
    // A listing asks every server in turn: it takes a slot too.
    for (const list of [a.listResources(), a.listPrompts()])
      assert.deepEqual((await refusal(list)).data, TOO_MANY);
    assert.equal(mcp.count('x-'), 0, 'the refused call never reached the server');
    assert.equal(mcp.count('doc:'), 0, 'nor the refused read');

    // Bob's own calls run: the cap is Alice's.
    const b = track(await connect(tb.url, bob.key));
    const bobs = b.callTool({ name: 'slow__hold', arguments: { tag: 'bob' } });
    await eventually(() => mcp.count('bob') === 1, { what: "Bob's call running" });
    mcp.release();
    assert.equal(text(await bobs), 'held bob');
    for (const r of await Promise.all(held)) assert.match(text(r), /^held a\d$/);
    // Once they answered, Alice lists, reads and calls again.
    assert.ok((await a.listResources()).resources.length > 0);
    const page = await a.readResource({ uri: `aibridge://slow/${encodeURIComponent('doc://page')}` });
    assert.deepEqual(
      page.contents.map((c) => ('text' in c ? c.text : '')),
      ['the page'],
    );

    // Recorded as refused calls are: the record, the live event, the metric.
    const rec = await eventually(async () => {
      const r = await tb.api<{ items: (GatewayToolCall & { via: string })[] }>(
        'GET',
        '/api/v1/tool-calls?via=gateway',
        alice.key,
      );
      return r.body.items.find((c) => c.outcome === 'too_many_calls' && !c.kind);
    });
    assert.equal(rec.name, 'slow__hold');
    assert.deepEqual(rec.input, { tag: 'x-over' });
    assert.match(rec.error ?? '', /^Too many MCP gateway calls at once/);
    assert.ok(events.some((e) => e.kind === 'resource' && e.outcome === 'too_many_calls'));
    const metric = await tb.bridge.metrics.registry.getSingleMetricAsString(
      'aibridge_mcp_gateway_calls_total',
    );
    assert.match(metric, /aibridge_mcp_gateway_calls_total\{server="slow",outcome="too_many_calls"\} 1\b/);
  });

  it('frees a slot however a call ends: an answer, an error, a timeout, a cancellation, a closed connection', async () => {
    const client = track(await connect(tb.url, alice.key));
    // Each round runs as many calls as the cap at once: one leaked slot per round would show.
    for (let round = 0; round < 2; round++) {
      const failed = await Promise.all(
        Array.from({ length: CAP }, (_, i) =>
          rpcError(client.callTool({ name: 'slow__fail', arguments: { tag: `f${round}${i}` } })),
        ),
      );
      for (const e of failed) assert.equal(e.code, ErrorCode.InvalidParams, e.message);

      const timedOut = await Promise.all(
        Array.from({ length: CAP }, (_, i) =>
          rpcError(client.callTool({ name: 'slower__hold', arguments: { tag: `t${round}${i}` } })),
        ),
      );
      for (const e of timedOut) assert.equal(e.code, ErrorCode.RequestTimeout, e.message);

      // The client's SDK cancels: `notifications/cancelled`, in a POST of its own.
      const abort = new AbortController();
      const cancelled = Array.from({ length: CAP }, (_, i) =>
        client
          .callTool({ name: 'slow__hold', arguments: { tag: `c${round}${i}` } }, undefined, {
            signal: abort.signal,
          })
          .catch(() => 'rejected'),
      );
      await eventually(() => mcp.count(`c${round}`) === CAP, { what: 'calls to cancel running' });
      const before = ended('slow__hold', 'cancelled');
      abort.abort('the user pressed escape');
      assert.deepEqual(await Promise.all(cancelled), ['rejected', 'rejected', 'rejected']);
      await eventually(() => ended('slow__hold', 'cancelled') === before + CAP, { what: 'cancellations' });

      // The client goes away: the HTTP request carrying a batch of calls is closed.
      const gone = new AbortController();
      const batch = await post(
        tb.url,
        alice.key,
        Array.from({ length: CAP }, (_, i) => holdCall(i + 1, `g${round}${i}`)),
        gone.signal,
      );
      await eventually(() => mcp.count(`g${round}`) === CAP, { what: 'calls to abandon running' });
      const beforeGone = ended('slow__hold', 'cancelled');
      gone.abort();
      await assert.rejects(batch.next());
      await eventually(() => ended('slow__hold', 'cancelled') === beforeGone + CAP, {
        what: 'calls ended by the closed connection',
      });
    }
    // After all of those, Alice still has her whole cap, and no more.
    await assertCapHolds('after');
  });

  it('runs the first calls of a batch up to the cap and refuses the rest one by one; the other messages run', async () => {
    const over = 2;
    const batch = await post(tb.url, alice.key, [
      ...Array.from({ length: CAP + over }, (_, i) => holdCall(i + 1, `batch${i}`)),
      { jsonrpc: '2.0', id: 100, method: 'tools/list' },
    ]);
    // The refusals and the list come at once, while the calls still run.
    const early = await within(
      (async () => [await batch.next(), await batch.next(), await batch.next()])(),
      'the refusals and the list',
    );
    await eventually(() => mcp.count('batch') === CAP, { what: 'the first calls running' });
    const list = early.find((m) => m.id === 100);
    assert.ok(list?.result?.tools && list.result.tools.length > 0, JSON.stringify(list));
    const refused = early.filter((m) => m.id !== 100);
    assert.equal(refused.length, over);
    for (const m of refused) {
      assert.equal(m.error?.code, ErrorCode.InvalidRequest);
      assert.deepEqual(m.error?.data, TOO_MANY);
    }
    assert.equal(mcp.count('batch'), CAP, 'the refused calls never reached the server');

    mcp.release();
    const done = [await batch.next(), await batch.next(), await batch.next()];
    for (const m of done)
      assert.match(m.result?.content?.[0]?.text ?? '', /^held batch\d$/, JSON.stringify(m));
    const ids = [...refused, ...done].map((m) => m.id).sort((x, y) => x - y);
    assert.deepEqual(ids, [1, 2, 3, 4, 5]);
    // Their slots are back.
    await assertCapHolds('post-batch');
  });
});

describe('the MCP gateway cap across two replicas on one PostgreSQL', function () {
  this.timeout(60_000);
  let upstream: AnthropicMock;
  let mcp: Holding;
  let a: TestBridge;
  let b: TestBridge;
  let alice: { key: string };
  const clients: Client[] = [];

  before(async () => {
    upstream = await new AnthropicMock().start();
    mcp = holdingServer();
    await mcp.server.start();
    const env = {
      AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('gateway_cap'),
      AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER: String(CAP),
    };
    a = await startBridge(upstream.url, env);
    b = await startBridge(upstream.url, env, a.dataDir);
    alice = await a.addUser('cap-replicas@example.com');
    const put = await a.api('PUT', '/api/v1/mcp/servers/slow', a.adminKey, {
      transport: { type: 'http', url: mcp.server.url },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    for (const tb of [a, b]) {
      const c = await connect(tb.url, alice.key);
      clients.push(c);
      await eventually(async () => (await c.listTools()).tools.some((t) => t.name === 'slow__hold'), {
        what: 'the server listed on both replicas',
        timeoutMs: 5000,
      });
    }
  });

  after(async () => {
    mcp?.release();
    for (const c of clients) await c.close().catch(() => undefined);
    await a?.close();
    await b?.close();
    await mcp?.server.stop();
    await upstream?.stop();
  });

  it("holds a member's calls spread over both replicas to one cap; a slot freed on one is free on the other", async () => {
    const [onA, onB] = clients as [Client, Client];
    const hold = (c: Client, tag: string) => c.callTool({ name: 'slow__hold', arguments: { tag } });
    const running = [hold(onA, 'r0'), hold(onA, 'r1'), hold(onB, 'r2')];
    await eventually(() => mcp.count('r') === CAP, { what: `${CAP} calls running over two replicas` });
    // Each replica repeats what it runs every 250 ms.
    await new Promise((r) => setTimeout(r, 700));
    for (const c of [onA, onB]) assert.deepEqual((await refusal(hold(c, 'over'))).data, TOO_MANY);
    assert.equal(mcp.count('over'), 0, 'no call past the cap reached the server');
    mcp.release();
    for (const r of await Promise.all(running)) assert.match(text(r), /^held r\d$/);
    await new Promise((r) => setTimeout(r, 700));
    // All ended: each replica runs the whole cap again.
    const again = [0, 1, 2].map((i) => hold(onB, `b${i}`));
    await eventually(() => mcp.count('b') === CAP, { what: 'the cap free again on B' });
    mcp.release();
    await Promise.all(again);
  });
});

describe('CallSlots and AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER', () => {
  it('counts per user, frees a slot once however often it is freed, and 0 means no cap', () => {
    const slots = new CallSlots(2);
    const a1 = slots.take('a');
    const a2 = slots.take('a');
    assert.ok(a1 && a2);
    assert.equal(slots.take('a'), undefined);
    assert.ok(slots.take('b'), "another user's slots are their own");
    a1();
    a1();
    assert.equal(slots.heldBy('a'), 1, 'freeing twice frees one slot');
    assert.ok(slots.take('a'));
    const open = new CallSlots(0);
    for (let i = 0; i < 1000; i++) assert.ok(open.take('a'));
  });

  it('adds up what other replicas run (share / heard): one cap across them, never held by a replica that went quiet', async () => {
    let now = 1_000_000;
    const x = new CallSlots(3, () => now);
    const y = new CallSlots(3, () => now);
    const stops = [x.share((c) => y.heard('x', c), 5), y.share((c) => x.heard('y', c), 5)];
    const tick = () => new Promise((r) => setTimeout(r, 30));
    try {
      const onX = [x.take('a'), x.take('a')];
      const onY = y.take('a');
      assert.ok(onX.every(Boolean) && onY);
      await tick();
      assert.equal(x.take('a'), undefined, 'two here and one there fill the cap of 3');
      assert.equal(y.take('a'), undefined);
      assert.ok(y.take('b'), "another user's calls are their own");
      onX[0]!();
      await tick();
      const again = y.take('a');
      assert.ok(again, 'a call that ended on X frees a slot on Y');
      again();
      await tick();
    } finally {
      for (const stop of stops) stop();
    }
    // A replica that stops repeating its count (killed) no longer holds anyone's slots.
    const z = new CallSlots(2, () => now);
    z.heard('dead', [['a', 2]]);
    assert.equal(z.take('a'), undefined);
    now += 1_001;
    assert.ok(z.take('a'), 'its count went stale');
    // What cannot be read is skipped; a count of 0 clears.
    const w = new CallSlots(1, () => now);
    for (const junk of [null, 'x', [[1, 2]], [['a', Number.NaN]], [['a', -1]]]) w.heard('r', junk);
    w.heard(7, [['a', 1]]);
    const first = w.take('a');
    assert.ok(first);
    first();
    w.heard('r', [['a', 1]]);
    assert.equal(w.take('a'), undefined);
    w.heard('r', [['a', 0]]);
    assert.ok(w.take('a'));
  });

  it('is 16 by default, 0 to switch it off, and anything else is refused at start', async () => {
    const dir = await tempDir();
    const load = (v?: string) =>
      loadConfig({ 'data-dir': dir }, v === undefined ? {} : { AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER: v });
    assert.equal(load().mcp.gatewayCallsPerUser, 16);
    assert.equal(load('0').mcp.gatewayCallsPerUser, 0);
    assert.equal(load('64').mcp.gatewayCallsPerUser, 64);
    for (const bad of ['-1', 'many', '1.5', '100001'])
      assert.throws(
        () => load(bad),
        (e: unknown) => e instanceof ConfigError && e.setting === 'AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER',
      );
  });
});
