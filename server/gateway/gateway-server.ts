import { randomUUID } from 'node:crypto';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  CancelledNotificationSchema,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  type Prompt,
  ReadResourceRequestSchema,
  type Resource,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { GatewayToolCall } from '../../shared/interception';
import { blockedMessage } from '../../shared/tool-policy';
import { BridgeError } from '../errors';
import type { McpConnection } from '../mcp/connection';
import type { UserServer } from '../mcp/hub';
import { callFailure, isMcpError, RpcCode } from '../mcp/rpc';
import { failureForMember, type WarnAdmins } from '../mcp/session';
import type { GatewayCaller, GatewayServerDeps } from './in-flight';
import { CONNECT_TOOL, connectAdvice, gatewayName, resourceUri, splitName, splitResourceUri } from './names';

const VERSION = '0.1.0';
/** Pages of resources or prompts read from one server per list, at most. */
const MAX_PAGES = 20;

/**
 * An error the SDK answers as a JSON-RPC error with this code and message. Not an `McpError`,
 * whose message starts `MCP error <code>:`, which the client's SDK would then prefix again.
 */
function rpcFailure(code: number, message: string, data?: unknown): Error & { code: number } {
  return Object.assign(new Error(message), { code }, data === undefined ? {} : { data });
}

/** `outcome` of a call refused because its user already runs as many as they may (CallSlots). */
const TOO_MANY_CALLS = 'too_many_calls';

/**
 * A call past its user's cap (AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER): a JSON-RPC error for that call
 * alone, so the rest of a batch runs. `-32600` is what the gateway answers its other "too many"
 * refusals with (rate limits, notification streams); `data.reason` tells it from a malformed
 * request. A protocol error rather than an `isError` result: the tool never ran, and clients (Claude
 * Code among them) show the message to the agent either way.
 */
function tooManyCalls(limit: number): Error & { code: number } {
  return rpcFailure(
    RpcCode.InvalidRequest,
    `Too many MCP gateway calls at once: ${limit} of yours are already running on this bridge, so this call was not run. Retry it when one of them has finished.`,
    { reason: TOO_MANY_CALLS, limit },
  );
}

/** Longest resource URI kept in a record; longer ones are cut, marked with `…`. */
const MAX_RECORDED_URI = 1024;

function recordedUri(v: unknown): string {
  const s = typeof v === 'string' ? v : String(v);
  return s.length > MAX_RECORDED_URI ? `${s.slice(0, MAX_RECORDED_URI)}…` : s;
}

/**
 * The link a `connect` call answers: an OAuth authorisation started for the caller, as `POST
 * /api/v1/me/mcp/:server/oauth` starts one. Each start stores the authorisation under way and the
 * PKCE verifier (rewrites of the embedded store's db.json) and asks the MCP server's authorisation
 * server again, so a member's are paced with their other changes: past the pace, no link and why.
 */
async function authorisationLink(
  d: GatewayServerDeps,
  caller: GatewayCaller,
  server: string,
): Promise<{ url: string | null; refused?: string }> {
  try {
    d.writes?.take(caller.principal.user);
  } catch (err) {
    if (err instanceof BridgeError) return { url: null, refused: err.message };
    throw err;
  }
  return d.hub.startOAuth(server, caller.principal.user.id, caller.origin).then(
    (r) => ({ url: r.authorizationUrl }),
    () => ({ url: null }),
  );
}

/**
 * One MCP server (the SDK's low-level `Server`) answering one HTTP request for one user: the tools,
 * resources and prompts of every central server this user may use, under `<server>__` names, each
 * call run on the user's own connection. Built fresh per request (stateless, docs/mcp.md).
 */
export function gatewayServer(d: GatewayServerDeps, caller: GatewayCaller): Server {
  const server = new Server(
    { name: 'aibridge', version: VERSION },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { listChanged: true },
        prompts: { listChanged: true },
      },
      instructions:
        "The organisation's approved MCP servers, through AI Bridge. Tools are named <server>__<tool>; every call is audited.",
    },
  );
  const { principal } = caller;
  const audience = { userId: principal.user.id, team: principal.user.team };
  const warnAdmins: WarnAdmins = (server, message) => d.hub.skipped(server, message, audience);
  const servers = (): Promise<UserServer[]> => d.hub.serversFor(principal);
  const ready = (list: UserServer[]): { s: UserServer; conn: McpConnection }[] => {
    const out: { s: UserServer; conn: McpConnection }[] = [];
    for (const s of list) {
      if (!s.conn) continue;
      if (s.conn.state !== 'ready') {
        d.hub.skipped(s.config.name, s.conn.lastError ?? `the server is ${s.conn.state}`, audience);
        continue;
      }
      out.push({ s, conn: s.conn });
    }
    return out;
  };
  /** The one server a read names, when ready: its connection alone is waited for. */
  const one = async (name: string): Promise<{ s: UserServer; conn: McpConnection } | undefined> => {
    const s = await d.hub.serverFor(principal, name);
    return s ? ready([s])[0] : undefined;
  };

  /** Records one call through the gateway when it ends: a tool call, or a resource or prompt read. */
  const recorder =
    (
      started: number,
      call: Pick<GatewayToolCall, 'name' | 'server' | 'tool' | 'input' | 'kind' | 'policy'>,
    ) =>
    (o: Pick<GatewayToolCall, 'outcome' | 'error'> & { result?: unknown }): void => {
      void d.log.record({
        id: `gwc_${randomUUID()}`,
        at: new Date(started).toISOString(),
        userId: principal.user.id,
        userEmail: principal.user.email,
        team: principal.user.team,
        keyId: principal.key.id,
        client: caller.client,
        sessionId: caller.sessionId,
        ...(call.kind ? { kind: call.kind } : {}),
        name: call.name,
        server: call.server,
        tool: call.tool,
        input: d.log.keptInput(call.input, principal.user.team),
        outcome: o.outcome,
        durationMs: Math.max(0, d.now() - started),
        resultBytes: o.result === undefined ? 0 : Buffer.byteLength(JSON.stringify(o.result)),
        error: o.error,
        ...(call.policy ? { policy: call.policy } : {}),
      });
    };

  /**
   * One of the user's call slots (CallSlots), and the function that frees it; past the cap, the
   * refusal is thrown (and recorded as `too_many_calls` when the call is one that is recorded).
   */
  const slot = (record?: ReturnType<typeof recorder>): (() => void) => {
    const free = d.slots.take(principal.user.id);
    if (free) return free;
    const refused = tooManyCalls(d.slots.limit);
    record?.({ outcome: TOO_MANY_CALLS, error: refused.message });
    throw refused;
  };

  /**
   * A resource or prompt read, recorded like a tool call (`kind` says which): an agent reading a
   * server's data is as much the audit's business as it calling a tool. It has the gateway's time
   * limit, as a tool call does. The server's own JSON-RPC errors pass as they are; a shared
   * server's other failures (what its transport answered) are the admins' to read, as for calls.
   */
  const read = async <T>(
    call: Pick<GatewayToolCall, 'name' | 'server' | 'tool' | 'input'> & { kind: 'resource' | 'prompt' },
    s: UserServer,
    signal: AbortSignal,
    run: (limitMs: number) => Promise<T>,
  ): Promise<T> => {
    const record = recorder(d.now(), call);
    const free = slot(record);
    try {
      const result = await run(s.config.timeoutMs ?? d.callTimeoutMs);
      record({ outcome: 'ok', error: null, result });
      return result;
    } catch (err) {
      const message = (err instanceof Error ? err.message : String(err)).slice(0, 300);
      const outcome = callFailure(err, signal);
      // A member's own per-user connection's failure is rethrown as it is, not wrapped.
      if (outcome === 'error' && !isMcpError(err) && s.config.auth.type !== 'per_user') {
        const shown = failureForMember(s.config, `a read of ${call.tool}`, message, warnAdmins);
        record({ outcome, error: shown });
        throw rpcFailure(RpcCode.InternalError, `${call.server} failed: ${shown}`);
      }
      record({ outcome, error: message });
      throw err;
    } finally {
      free();
    }
  };

  // Cancellations arrive in their own POST, often to a fresh server: the registry finds the call.
  server.setNotificationHandler(CancelledNotificationSchema, async (n) => {
    if (n.params.requestId === undefined) return;
    d.inFlight.cancel(
      principal.user.id,
      caller.sessionId,
      n.params.requestId,
      n.params.reason ?? 'cancelled',
    );
  });

  server.setRequestHandler(ListToolsRequestSchema, async () => {
    const list = await servers();
    const tools: Tool[] = [];
    for (const s of list) {
      if (s.config.auth.type === 'per_user' && !s.conn) {
        tools.push({
          name: gatewayName(s.config.name, CONNECT_TOOL),
          description: `Connect your own account for ${s.config.name}${s.config.description ? ` (${s.config.description})` : ''} to use its tools: call this for the link.`,
          inputSchema: { type: 'object', properties: {} },
        });
      }
    }
    for (const { s, conn } of ready(list))
      for (const t of conn.tools) tools.push({ ...t, name: gatewayName(s.config.name, t.name) });
    return { tools };
  });

  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const started = d.now();
    const name = req.params.name;
    const parts = splitName(name);
    const s = parts ? await d.hub.serverFor(principal, parts.server) : undefined;
    if (!parts || !s) throw rpcFailure(RpcCode.InvalidParams, `Unknown tool: ${name}`);
    const args = req.params.arguments ?? {};
    const mark = d.judge?.(principal, [name, `mcp__${parts.server}__${parts.tool}`], args);
    const record = recorder(started, {
      name,
      server: parts.server,
      tool: parts.tool,
      input: args,
      ...(mark ? { policy: mark } : {}),
    });
    if (mark?.action === 'deny') {
      const result: CallToolResult = {
        isError: true,
        content: [{ type: 'text', text: blockedMessage(name, args, mark.rule) }],
      };
      record({ outcome: 'denied', error: `denied by rule ${mark.rule}`, result });
      return result;
    }

    if (s.config.auth.type === 'per_user' && !s.conn) {
      const link = s.config.auth.oauth ? await authorisationLink(d, caller, s.config.name) : { url: null };
      const advice = connectAdvice(s.config, caller.origin, link.url);
      const result: CallToolResult = {
        isError: true,
        content: [{ type: 'text', text: link.refused ? `${link.refused} ${advice}` : advice }],
      };
      record({ outcome: 'no_credential', error: 'no credential for this server', result });
      return result;
    }
    const conn = s.conn;
    const tool = conn?.state === 'ready' ? conn.tools.find((t) => t.name === parts.tool) : undefined;
    if (conn && conn.state !== 'ready') {
      const why = conn.lastError ?? `the server is ${conn.state}`;
      // A shared server's reason is what it answered (an error body, an internal address): the
      // admins' to read (its status, the mcp.warning event), as for injection. A user's own
      // per-user connection's reason is theirs.
      const shown = s.config.auth.type === 'per_user' ? why : `the server is ${conn.state}`;
      d.hub.skipped(s.config.name, why, audience);
      record({ outcome: 'error', error: shown });
      throw rpcFailure(RpcCode.InternalError, `${parts.server} is unavailable: ${shown}`);
    }
    // Not offered to this user (denied by the server's patterns, or no such tool): as if unknown.
    if (!conn || !tool) throw rpcFailure(RpcCode.InvalidParams, `Unknown tool: ${name}`);

    // Taken once the call is known to reach its server: a denied call, or one to a server not
    // connected, holds nothing upstream. Freed in the `finally` below, however the call ends.
    const free = slot(record);
    const limitMs = s.config.timeoutMs ?? d.callTimeoutMs;
    const abort = new AbortController();
    const forget = d.inFlight.add(principal.user.id, caller.sessionId, extra.requestId, abort);
    const signal = AbortSignal.any([abort.signal, extra.signal, caller.gone]);
    try {
      const result = await conn.call(parts.tool, args, limitMs, signal);
      record({ outcome: 'ok', error: null, result });
      return result;
    } catch (err) {
      const failure = callFailure(err, signal);
      if (failure === 'cancelled') {
        // Ended by the bridge: the key was revoked or the user deactivated while it ran.
        const ended = caller.gone.reason;
        if (ended instanceof BridgeError) {
          record({ outcome: 'cancelled', error: ended.message });
          throw rpcFailure(RpcCode.ConnectionClosed, ended.message);
        }
        record({ outcome: 'cancelled', error: 'cancelled by the client' });
        throw rpcFailure(RpcCode.ConnectionClosed, 'The call was cancelled.');
      }
      const message = err instanceof Error ? err.message : String(err);
      if (failure === 'timeout') {
        record({ outcome: 'timeout', error: message });
        throw rpcFailure(RpcCode.RequestTimeout, `${parts.server} did not answer within ${limitMs} ms.`);
      }
      // The server's own JSON-RPC error (invalid params, ...) passes through: the tool's answer.
      if (isMcpError(err) && err.code !== RpcCode.ConnectionClosed) {
        record({ outcome: 'error', error: message.slice(0, 300) });
        throw rpcFailure(err.code, err.message.replace(/^MCP error -?\d+: /, ''));
      }
      // Anything else is the transport's: a shared server's (an error body, an internal address)
      // is for admins, as its reason for being down is; a member's own connection's is theirs.
      const shown = failureForMember(s.config, `a call of ${parts.tool}`, message.slice(0, 300), warnAdmins);
      record({ outcome: 'error', error: shown });
      throw rpcFailure(RpcCode.InternalError, `${parts.server} failed: ${shown}`);
    } finally {
      forget();
      free();
    }
  });

  /**
   * Every ready server's items of one kind, up to MAX_PAGES pages each (`page` answers undefined
   * for a page a server failed: that server gives what it gave so far). A listing asks every
   * server in turn: it holds one of the user's call slots while it runs, or one member's
   * concurrent listings would hold every server's connections as uncapped calls would. Not
   * recorded: it names no tool.
   */
  const listEvery = async <T>(
    offers: (conn: McpConnection) => boolean,
    page: (
      s: UserServer,
      conn: McpConnection,
      cursor: string | undefined,
    ) => Promise<{ items: T[]; nextCursor?: string | undefined } | undefined>,
  ): Promise<T[]> => {
    const free = slot();
    try {
      const items: T[] = [];
      for (const { s, conn } of ready(await servers())) {
        if (!offers(conn)) continue;
        let cursor: string | undefined;
        for (let n = 0; n < MAX_PAGES; n++) {
          const r = await page(s, conn, cursor);
          if (!r) break;
          // One by one: a server's page may be longer than a call's arguments can be.
          for (const x of r.items) items.push(x);
          cursor = r.nextCursor;
          if (!cursor) break;
        }
      }
      return items;
    } finally {
      free();
    }
  };

  server.setRequestHandler(ListResourcesRequestSchema, async (_req, extra) => ({
    resources: await listEvery(
      (conn) => Boolean(conn.capabilities?.resources),
      async (s, conn, cursor) => {
        const r = await conn.listResources(cursor, s.timeoutMs, extra.signal).catch(() => undefined);
        if (!r) return undefined;
        const items: Resource[] = r.resources.map((x) => ({
          ...x,
          uri: resourceUri(s.config.name, x.uri),
          name: gatewayName(s.config.name, x.name),
        }));
        return { items, nextCursor: r.nextCursor };
      },
    ),
  }));

  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({ resourceTemplates: [] }));

  server.setRequestHandler(ReadResourceRequestSchema, async (req, extra) => {
    const parts = splitResourceUri(req.params.uri);
    const s = parts ? await one(parts.server) : undefined;
    if (!parts || !s?.conn.capabilities?.resources)
      throw rpcFailure(RpcCode.InvalidParams, `Unknown resource: ${req.params.uri}`);
    // The URIs are the client's (and the server's) strings: redacted like inputs, and capped.
    const call = {
      kind: 'resource' as const,
      name: recordedUri(d.log.redact(req.params.uri)),
      server: parts.server,
      tool: recordedUri(d.log.redact(parts.uri)),
      input: {},
    };
    const r = await read(call, s.s, extra.signal, (limitMs) =>
      s.conn.readResource(parts.uri, limitMs, extra.signal),
    );
    return { ...r, contents: r.contents.map((c) => ({ ...c, uri: resourceUri(parts.server, c.uri) })) };
  });

  server.setRequestHandler(ListPromptsRequestSchema, async (_req, extra) => ({
    prompts: await listEvery(
      (conn) => Boolean(conn.capabilities?.prompts),
      async (s, conn, cursor) => {
        const r = await conn.listPrompts(cursor, s.timeoutMs, extra.signal).catch(() => undefined);
        if (!r) return undefined;
        const items: Prompt[] = r.prompts.map((p) => ({ ...p, name: gatewayName(s.config.name, p.name) }));
        return { items, nextCursor: r.nextCursor };
      },
    ),
  }));

  server.setRequestHandler(GetPromptRequestSchema, async (req, extra) => {
    const parts = splitName(req.params.name);
    const s = parts ? await one(parts.server) : undefined;
    if (!parts || !s?.conn.capabilities?.prompts)
      throw rpcFailure(RpcCode.InvalidParams, `Unknown prompt: ${req.params.name}`);
    const args = req.params.arguments ?? {};
    const call = {
      kind: 'prompt' as const,
      name: req.params.name,
      server: parts.server,
      tool: parts.tool,
      input: args,
    };
    return read(call, s.s, extra.signal, (limitMs) =>
      s.conn.getPrompt(parts.tool, req.params.arguments, limitMs, extra.signal),
    );
  });

  return server;
}
