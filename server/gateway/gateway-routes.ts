import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../core/principal';
import { BridgeError, fromFastifyError } from '../errors';
import { principalOf } from '../http/access';
import { assertJsonDepth } from '../http/json-depth';
import { type Authenticator, credentialFrom, isAccessRefusal } from '../identity/auth';
import { RpcCode } from '../mcp/rpc';
import { authenticateFirst } from '../proxy/authenticate-first';
import type { RateLimiter } from '../spend/rate-limits';
import type { GatewayServerDeps } from './in-flight';
import { type GatewaySession, newSessionId, readSessionId } from './session-id';

export const GATEWAY_PATH = '/mcp';
export const RESOURCE_METADATA_PATH = '/.well-known/oauth-protected-resource';
/** Largest JSON-RPC message body the gateway reads (arguments included). */
export const GATEWAY_BODY_LIMIT = 4 * 1024 * 1024;
/**
 * Objects and arrays a gateway message may hold (AIBRIDGE_MAX_JSON_CONTAINERS when lower), and so
 * twice as many keys and four times as many values (assertJsonDepth).
 */
export const GATEWAY_MAX_CONTAINERS = 25_000;

/**
 * JSON-RPC methods that reach MCP servers, each counted as one call against the caller's rate
 * limits: the lists of resources and prompts ask every ready server (the tool list is the bridge's own).
 */
const COUNTED = new Set(['tools/call', 'resources/read', 'prompts/get', 'resources/list', 'prompts/list']);
/** Notification streams (GET /mcp) one user may hold open on one replica. */
const STREAMS_PER_USER = 16;
/** How often a notification stream's credential is checked again, as the live sockets' are. */
const RECHECK_MS = 30_000;

export interface GatewayRouteDeps extends GatewayServerDeps {
  auth: Authenticator;
  limiter: Pick<RateLimiter, 'admit' | 'settle'>;
  /** AIBRIDGE_PUBLIC_URL, else each request's own origin. */
  publicUrl: string | undefined;
  /** Deepest JSON nesting accepted in a message (AIBRIDGE_MAX_JSON_DEPTH). */
  maxJsonDepth: number;
  maxJsonContainers: number;
  /** The bridge's own OAuth access tokens; absent: bridge keys only, and no authorization server named. */
  accessTokens?: GatewayAccessTokens;
  /** How often an open notification stream's key or token is checked again (default 30 s). */
  recheckMs?: number;
  /**
   * The store's key and user changes (here or on another replica): the requests of a key revoked
   * or a user deactivated are checked again at once, not at the next recheck.
   */
  changes?: (listener: (change: { kind: string; id?: string }) => void) => () => void;
}

interface JsonRpcMessage {
  jsonrpc?: unknown;
  method?: unknown;
  id?: unknown;
  params?: unknown;
}

/** AIBRIDGE_PUBLIC_URL, else the request's own origin: the base of the resource and issuer URLs. */
export function gatewayOrigin(req: FastifyRequest, publicUrl: string | undefined): string {
  return publicUrl ?? `${req.protocol}://${req.host}`;
}
const originOf = gatewayOrigin;

/**
 * OAuth access tokens the gateway accepts besides bridge keys (server/oauth): issued by the bridge
 * for this resource only. The gateway knows them by shape and asks whom they speak for.
 */
export interface GatewayAccessTokens {
  looksLike(token: string): boolean;
  /** The principal, or `unauthorized` / `user_deactivated`; `resource` is this gateway's URL (audience). */
  authenticate(token: string, resource: string): Promise<Principal>;
}

/** A gateway request being served, checked again when its key or user changes. */
interface Watched {
  readonly userId: string;
  readonly keyId: string;
  check(): void;
}

/** Authenticates again; a refusal (revoked, expired, deactivated) ends the request. */
function refuseIfGone(recheck: () => Promise<Principal>, end: (refusal: BridgeError) => void): void {
  recheck().catch((err: unknown) => {
    if (isAccessRefusal(err)) end(err);
  });
}

/** A JSON-RPC error as the whole HTTP answer (the request never reached an MCP server). */
function rpcError(reply: FastifyReply, status: number, code: number, message: string): FastifyReply {
  return reply
    .code(status)
    .type('application/json')
    .send({ jsonrpc: '2.0', id: null, error: { code, message } });
}

function messagesOf(body: unknown): JsonRpcMessage[] {
  const list = Array.isArray(body) ? body : [body];
  return list.filter((m): m is JsonRpcMessage => typeof m === 'object' && m !== null);
}

function webHeaders(req: FastifyRequest): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || k.startsWith(':')) continue;
    for (const one of Array.isArray(v) ? v : [v]) h.append(k, one);
  }
  return h;
}

/** Writes a web `Response` (an SSE stream or JSON) to the client, as it comes, until either side ends. */
async function relay(res: Response, raw: ServerResponse): Promise<void> {
  const headers: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    headers[k] = v;
  });
  raw.writeHead(res.status, headers);
  if (!res.body) {
    raw.end();
    return;
  }
  // Node holds the head until the first body byte: a notification stream with nothing to say yet
  // (its first keep-alive 15 s away) left its client waiting that long to learn it was open.
  raw.flushHeaders();
  const reader = res.body.getReader();
  raw.once('close', () => void reader.cancel().catch(() => undefined));
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!raw.write(value)) await new Promise<void>((r) => raw.once('drain', r).once('close', r));
      if (raw.destroyed) break;
    }
  } finally {
    raw.end();
  }
}

/**
 * The MCP gateway (docs/mcp.md#the-mcp-gateway): `POST|GET|DELETE /mcp`, a Streamable HTTP MCP
 * server, authenticated with the user's bridge key before the body is read, and its RFC 9728
 * metadata. Stateless: every request gets a fresh SDK transport and server, so any replica can
 * serve any request of a session; what a session remembers (its client) travels in its id.
 * Notification streams (GET) live on the replica that holds them, and each replica notifies its
 * own when servers change (the change feed reloads them everywhere).
 */
export function gatewayRoutes(d: GatewayRouteDeps): FastifyPluginAsync {
  return async (app) => {
    const streams = new Map<string, Set<Server>>();
    /** GET streams admitted and not yet held (the SDK loading), by user. */
    const opening = new Map<string, number>();
    // A change of one user's own connection (their credential for a per-user server) is told to
    // that user's streams only: the others' offers did not change, and it is not theirs to see.
    const unsubscribe = d.hub.onChange((userId) => {
      const sets = userId === undefined ? [...streams.values()] : [streams.get(userId) ?? new Set<Server>()];
      for (const set of sets)
        for (const s of set) {
          void s.sendToolListChanged().catch(() => undefined);
          void s.sendResourceListChanged().catch(() => undefined);
          void s.sendPromptListChanged().catch(() => undefined);
        }
    });
    app.addHook('onClose', async () => {
      unsubscribe();
      await Promise.all([...streams.values()].flatMap((set) => [...set].map((s) => s.close())));
    });

    const metadata = async (req: FastifyRequest) => ({
      resource: `${originOf(req, d.publicUrl)}${GATEWAY_PATH}`,
      // The bridge is its own authorization server for /mcp (server/oauth); without it, none to name.
      authorization_servers: d.accessTokens ? [originOf(req, d.publicUrl).replace(/\/+$/, '')] : [],
      bearer_methods_supported: ['header'],
      resource_name: 'AI Bridge MCP gateway',
      resource_documentation: `${originOf(req, d.publicUrl)}/admin`,
    });
    app.get(RESOURCE_METADATA_PATH, { config: { access: 'public' } }, metadata);
    app.get(`${RESOURCE_METADATA_PATH}${GATEWAY_PATH}`, { config: { access: 'public' } }, metadata);

    const tokens = d.accessTokens;
    const open = new Set<Watched>();
    const unwatch = d.changes?.((change) => {
      if ((change.kind !== 'key' && change.kind !== 'user') || open.size === 0) return;
      const mine = [...open].filter((w) => (change.kind === 'key' ? w.keyId : w.userId) === change.id);
      // After the other watchers (the auth cache) have seen the change, as live-plugin.ts does.
      if (mine.length > 0)
        setImmediate(() => {
          for (const w of mine) w.check();
        });
    });
    if (unwatch) app.addHook('onClose', async () => unwatch());
    /** Authenticates a request's credential again: a long-lived stream outlives no revocation. */
    const recheckOf = (req: FastifyRequest): (() => Promise<Principal>) => {
      const bearer = credentialFrom(req.headers);
      const resource = `${originOf(req, d.publicUrl)}${GATEWAY_PATH}`;
      if (tokens !== undefined && bearer !== undefined && tokens.looksLike(bearer))
        return () => tokens.authenticate(bearer, resource);
      const credential = bearer ? { authorization: `Bearer ${bearer}` } : {};
      return () => d.auth.authenticate(credential, req.ip);
    };

    await app.register(async (mcp) => {
      const first = authenticateFirst(d.auth, GATEWAY_PATH);
      mcp.addHook('onRequest', async (req, reply) => {
        const bearer = credentialFrom(req.headers);
        const oauth = tokens !== undefined && bearer !== undefined && tokens.looksLike(bearer);
        try {
          if (oauth) {
            try {
              req.principal = await tokens.authenticate(
                bearer,
                `${originOf(req, d.publicUrl)}${GATEWAY_PATH}`,
              );
            } catch (err) {
              if (!req.raw.complete) reply.header('connection', 'close');
              throw err;
            }
          } else
            await new Promise<void>((resolve, reject) =>
              first(req, reply, (err) => (err ? reject(err) : resolve())),
            );
          // The provider routes let agents' keyless `HEAD <base URL>` probe through; the gateway
          // has no such probe to answer, so a request without a key is refused here like any other.
          if (!req.principal)
            throw new BridgeError('unauthorized', 'A bridge key or an access token is required.');
        } catch (err) {
          if (err instanceof BridgeError && err.status === 401) {
            const metadata = `resource_metadata="${originOf(req, d.publicUrl)}${RESOURCE_METADATA_PATH}"`;
            // RFC 6750 §3.1: a token that was sent and refused is invalid_token, so the client re-authorizes.
            reply.header(
              'www-authenticate',
              oauth ? `Bearer error="invalid_token", ${metadata}` : `Bearer ${metadata}`,
            );
          }
          throw err;
        }
      });
      // The body is JSON-RPC: parsed here, so a malformed one gets the JSON-RPC parse error.
      mcp.removeAllContentTypeParsers();
      mcp.addContentTypeParser(
        '*',
        { parseAs: 'buffer', bodyLimit: GATEWAY_BODY_LIMIT },
        (_req, body, done) => done(null, body),
      );
      mcp.setErrorHandler((err, req, reply) => {
        const e = fromFastifyError(err);
        if (e.code === 'internal_error') req.log.error({ err }, 'mcp gateway: request failed');
        reply.headers(e.headers);
        // Refusals of the key keep the bridge's error shape; the rest answer as JSON-RPC.
        if (e.status === 401 || e.status === 403) return reply.code(e.status).send(e.toBody());
        const code =
          e.code === 'body_too_large' || e.code === 'rate_limited'
            ? RpcCode.InvalidRequest
            : RpcCode.InternalError;
        return rpcError(reply, e.status, code, e.message);
      });

      const config = { access: 'member' as const };
      const handle = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
        const principal = principalOf(req);
        let body: unknown;
        if (req.method === 'POST') {
          const raw = req.body as Buffer | undefined;
          try {
            // Nesting is bounded as for model requests: the SDK's validation recurses through it,
            // at some 3 µs a key (a 4 MiB `tools/list` of 300,000 keys in `params` took 0.85 s of
            // the loop), so the count is bounded tighter: a tool's arguments are a few hundred.
            if (raw)
              assertJsonDepth(raw, d.maxJsonDepth, Math.min(d.maxJsonContainers, GATEWAY_MAX_CONTAINERS));
            body = JSON.parse(raw?.toString('utf8') ?? '');
          } catch (err) {
            const why = err instanceof BridgeError ? err.message : 'the body is not JSON';
            rpcError(reply, 400, RpcCode.ParseError, `Parse error: ${why}`);
            return;
          }
        }
        const messages = messagesOf(body);
        let session: GatewaySession | undefined;
        const header = req.headers['mcp-session-id'];
        const init = messages.find((m) => m.method === 'initialize');
        if (init) {
          const info = (init.params as { clientInfo?: { name?: unknown; version?: unknown } } | undefined)
            ?.clientInfo;
          const name = typeof info?.name === 'string' && info.name ? info.name : 'unknown';
          session = newSessionId(principal.user.id, name);
          reply.raw.setHeader('mcp-session-id', session.id);
        } else if (typeof header === 'string') {
          session = readSessionId(header);
          // Another user's session, or one this gateway never issued: the spec's "start again".
          if (!session || session.userId !== principal.user.id) {
            rpcError(reply, 404, RpcCode.InvalidRequest, 'Session not found: initialize again.');
            return;
          }
        }
        if (req.method === 'DELETE') {
          // Nothing is kept per session, so there is nothing to forget.
          reply.code(204).send();
          return;
        }

        // Each call that reaches a server (a tool call, a resource read, a prompt, the lists of
        // resources and prompts) counts against the user's rate limits like a model request does.
        const calls = messages.filter((m) => typeof m.method === 'string' && COUNTED.has(m.method));
        const admitted: string[] = [];
        try {
          for (const _ of calls) {
            const id = `gwr_${randomUUID()}`;
            d.limiter.admit(id, principal);
            admitted.push(id);
          }
        } catch (err) {
          for (const id of admitted) d.limiter.settle(id, 0);
          throw err;
        }

        let held: Set<Server> | undefined;
        const uid = principal.user.id;
        if (req.method === 'GET') {
          held = streams.get(uid) ?? new Set();
          // Streams still loading the SDK count too: a burst of GETs right after a start all
          // passed the check before any was added.
          if (held.size + (opening.get(uid) ?? 0) >= STREAMS_PER_USER)
            throw new BridgeError(
              'rate_limited',
              `At most ${STREAMS_PER_USER} open MCP notification streams per user on one replica.`,
              { headers: { 'retry-after': '30' } },
            );
          streams.set(uid, held);
          opening.set(uid, (opening.get(uid) ?? 0) + 1);
        }

        const gone = new AbortController();
        reply.raw.once('close', () => gone.abort());
        // Checked again when its key or user changes: a revocation or a deactivation ends a running
        // call or an open stream now (the call aborts with its HTTP request).
        const watched: Watched = {
          userId: principal.user.id,
          keyId: principal.key.id,
          // A stream is closed; a running call is ended with a JSON-RPC error saying why, so the
          // client is told rather than left to wait out the call on a closed connection.
          check: () =>
            refuseIfGone(recheckOf(req), (err) =>
              req.method === 'GET'
                ? reply.raw.destroy()
                : gone.abort(new BridgeError('unauthorized', `${err.message} The call was ended.`)),
            ),
        };
        open.add(watched);
        reply.raw.once('close', () => open.delete(watched));
        // The MCP SDK and the server built on it are loaded on first use (server/mcp/rpc.ts says why).
        let modules: [
          typeof import('./gateway-server'),
          typeof import('@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'),
        ];
        try {
          modules = await Promise.all([
            import('./gateway-server'),
            import('@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'),
          ]);
        } finally {
          if (held) {
            const left = (opening.get(uid) ?? 1) - 1;
            if (left <= 0) opening.delete(uid);
            else opening.set(uid, left);
          }
        }
        const [{ gatewayServer }, { WebStandardStreamableHTTPServerTransport }] = modules;
        // The client left while the SDK loaded: its `close` has fired, so nothing would free a slot.
        if (reply.raw.destroyed) {
          reply.hijack();
          for (const id of admitted) d.limiter.settle(id, 0);
          return;
        }
        const server = gatewayServer(d, {
          principal,
          client: session?.client ?? 'unknown',
          sessionId: session?.id ?? null,
          gone: gone.signal,
          origin: originOf(req, d.publicUrl),
        });
        const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined });
        reply.hijack();
        if (held) {
          const set = held;
          set.add(server);
          // A revoked key, an ended OAuth grant or a deactivated user ends the stream at the next
          // check, as a live socket is closed: it would otherwise be held, and told, for ever.
          const timer = setInterval(watched.check, d.recheckMs ?? RECHECK_MS);
          timer.unref();
          reply.raw.once('close', () => {
            clearInterval(timer);
            set.delete(server);
            if (set.size === 0 && streams.get(principal.user.id) === set) streams.delete(principal.user.id);
          });
        }
        reply.raw.once('close', () => {
          for (const id of admitted) d.limiter.settle(id, 0);
          void transport.close().catch(() => undefined);
          void server.close().catch(() => undefined);
        });
        try {
          await server.connect(transport);
          // fastify has read the body already: the SDK gets it parsed, and a Request without one.
          const webReq = new Request(`${originOf(req, undefined)}${req.url}`, {
            method: req.method,
            headers: webHeaders(req),
            signal: gone.signal,
          });
          const res = await transport.handleRequest(webReq, body === undefined ? {} : { parsedBody: body });
          await relay(res, reply.raw);
        } catch (err) {
          req.log.error({ err }, 'mcp gateway: the request failed');
          if (!reply.raw.headersSent) {
            reply.raw.writeHead(500, { 'content-type': 'application/json' });
            reply.raw.end(
              JSON.stringify({
                jsonrpc: '2.0',
                id: null,
                error: { code: RpcCode.InternalError, message: 'Internal error' },
              }),
            );
          } else reply.raw.end();
        }
      };
      mcp.post(GATEWAY_PATH, { config }, handle);
      mcp.get(GATEWAY_PATH, { config }, handle);
      mcp.delete(GATEWAY_PATH, { config }, handle);
    });
  };
}
