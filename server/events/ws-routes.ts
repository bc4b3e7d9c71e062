import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyPluginAsync, RouteShorthandOptions } from 'fastify';
import { type WebSocket, WebSocketServer } from 'ws';
import type { User } from '../../shared/identity';
import {
  type BridgeEvent,
  type BridgeEventType,
  CLOSE_CODES,
  type CloseNotice,
  type CloseReason,
  EVENTS_PATH,
  EVENTS_SUBPROTOCOL,
  isEventType,
  KEY_SUBPROTOCOL_PREFIX,
  PROTOCOL_VERSION,
} from '../../shared/protocol';
import { memberMayRead } from '../../shared/spend';
import type { Audience } from '../core/audience';
import type { Principal } from '../core/principal';
import { withoutPathKeys } from '../core/url-secrets';
import { BridgeError, isBridgeError } from '../errors';
import { type Authenticator, credentialFrom, isAccessRefusal } from '../identity/auth';
import type { IdentityService } from '../identity/identity-service';
import type { Store } from '../store/types';
import type { EventBus } from './bus';

export interface LiveEventsOptions {
  /** How often the server pings each client (and re-checks its key); a client silent for a whole interval is dropped. */
  heartbeatMs: number;
  /** Bytes queued for one client beyond which it is dropped as a slow consumer. */
  maxBufferedBytes: number;
  /** How long a closing client gets to answer the close before its socket is destroyed. */
  closeGraceMs: number;
  /** Sockets one user may hold open (AIBRIDGE_LIVE_SOCKETS_PER_USER); one more is closed with 4029. */
  maxSocketsPerUser: number;
  /** Sockets one key (or the admin-page session of one key) may hold open (AIBRIDGE_LIVE_SOCKETS_PER_KEY). */
  maxSocketsPerKey: number;
}

const LIVE_DEFAULTS: LiveEventsOptions = {
  heartbeatMs: 30_000,
  maxBufferedBytes: 1024 * 1024,
  closeGraceMs: 1000,
  maxSocketsPerUser: 32,
  maxSocketsPerKey: 16,
};

/** The admin page's cookie sign-ins (server/admin): a browser cannot set headers on a WebSocket. */
export interface BrowserSessions {
  tokenOf(headers: IncomingHttpHeaders): string | undefined;
  /** Whether the upgrade's Origin is the bridge itself: cookies ride along on cross-site upgrades too. */
  sameOrigin(headers: IncomingHttpHeaders): boolean;
  resolve(token: string): Promise<Principal>;
}

export interface LiveEventsDeps {
  bus: EventBus;
  auth: Authenticator;
  identity: IdentityService;
  store: Store;
  log: FastifyBaseLogger;
  browser?: BrowserSessions;
  /** The client's address (behind a trusted proxy, from X-Forwarded-For); default: the socket's peer. */
  clientAddress?: (req: IncomingMessage) => string | undefined;
}

/** What one client asked to see. `userId`/`team` null: no narrowing (admins see everyone's). */
interface Filter {
  userId: string | null;
  team: string | null;
  types: ReadonlySet<BridgeEventType> | null;
}

interface Client {
  ws: WebSocket;
  principal: Principal;
  /** Re-checks the key or session the socket was opened with (every heartbeat). */
  recheck: () => Promise<Principal>;
  filter: Filter;
  alive: boolean;
  /** Opened with the admin page's session cookie (a sign-out anywhere rechecks these). */
  cookie: boolean;
  /** The upgrade's URL: its query goes in the access log when an admin starts watching. */
  url: URL;
}

class CloseError extends Error {
  constructor(
    readonly reason: CloseReason,
    message: string,
    /** Seconds the client should wait before reconnecting, sent in the close notice. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

/** A close reason is at most 123 bytes on the wire. */
function reasonText(message: string): string {
  const buf = Buffer.from(message);
  return buf.length <= 123
    ? message
    : `${buf
        .subarray(0, 119)
        .toString()
        .replace(/\uFFFD+$/, '')}...`;
}

/** The key a browser offered as `aibridge.key.<key>`. */
function keyFromProtocols(header: string | undefined): string | undefined {
  for (const p of (header ?? '').split(',')) {
    const s = p.trim();
    if (s.startsWith(KEY_SUBPROTOCOL_PREFIX)) return s.slice(KEY_SUBPROTOCOL_PREFIX.length);
  }
  return undefined;
}

function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
  );
}

/** Members see events about themselves, their team as a whole and the whole org (team and org budget alerts). */
function memberMaySee(user: User, a: Audience): boolean {
  if (a.userId !== null) return a.userId === user.id;
  return a.team === null || a.team === user.team;
}

function wants(c: Client, event: BridgeEvent, a: Audience): boolean {
  if (c.filter.types && !c.filter.types.has(event.type)) return false;
  if (c.principal.user.role !== 'admin') {
    // MCP warnings carry what a tool server answered (error bodies, internal URLs): admins' business.
    if (event.type === 'mcp.warning') return false;
    // An alert about nobody in particular (a provider refusing the organisation's key) is
    // operations', as `GET /api/v1/alerts` keeps it from members; budgets' are `budget.alert`.
    if (event.type === 'alert' && (a.userId === null || !memberMayRead(event.alert))) return false;
    if (!memberMaySee(c.principal.user, a)) return false;
  }
  if (c.filter.userId !== null && a.userId !== c.filter.userId) return false;
  if (c.filter.team !== null && a.team !== c.filter.team) return false;
  return true;
}

/**
 * `GET /api/v1/events`: the bus, as a WebSocket per client. Sending never waits: each event is
 * serialised once and written to every socket that wants it; a socket whose unsent bytes pass
 * `maxBufferedBytes` is closed with 4008 instead of being waited for.
 */
export class LiveEvents {
  private readonly wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    // Clients have nothing to say beyond pongs.
    maxPayload: 4096,
    handleProtocols: (offered) => (offered.has(EVENTS_SUBPROTOCOL) ? EVENTS_SUBPROTOCOL : false),
  });
  private readonly clients = new Set<Client>();
  /** Open sockets by user id, for the per-user cap. */
  private readonly perUser = new Map<string, number>();
  /** Open sockets by key id, for the per-key cap. */
  private readonly perKey = new Map<string, number>();
  /** A recheck of the cookie sockets under way (recheckSessions), and whether another must follow it. */
  private sessionsRound: Promise<void> | undefined;
  private sessionsAgain = false;
  /** Sockets between the upgrade and the end of authentication, so shutdown reaches them too. */
  private readonly pending = new Set<WebSocket>();
  private unsubscribe: (() => void) | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private closing = false;
  private readonly opts: LiveEventsOptions;

  constructor(
    private readonly deps: LiveEventsDeps,
    opts: Partial<LiveEventsOptions> = {},
  ) {
    this.opts = { ...LIVE_DEFAULTS, ...opts };
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Takes over WebSocket upgrades of EVENTS_PATH on `server`; other upgrade paths are refused unless someone else listens. */
  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? '/', 'http://bridge');
      if (url.pathname !== EVENTS_PATH) {
        if (server.listenerCount('upgrade') !== 1) return;
        // Codex tries the Responses API over a WebSocket (docs/routing.md): a 426 is what makes
        // it fall back to HTTP at once; a 404 it retried seven times, some 6 s of every run.
        const responses = /\/responses\/?$/.test(url.pathname);
        this.deps.log.info(
          { path: withoutPathKeys(url.pathname), statusCode: responses ? 426 : 404 },
          'refused a WebSocket upgrade',
        );
        if (responses) refuseUpgrade(socket, 426, 'Upgrade Required');
        else refuseUpgrade(socket, 404, 'Not Found');
        return;
      }
      if (this.closing) return refuseUpgrade(socket, 503, 'Service Unavailable');
      // A cookie-authenticated upgrade from another site would be cross-site WebSocket hijacking.
      if (this.cookieOf(req) !== undefined && !this.deps.browser?.sameOrigin(req.headers))
        return refuseUpgrade(socket, 403, 'Forbidden');
      socket.on('error', () => socket.destroy());
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        this.pending.add(ws);
        ws.on('error', () => ws.terminate());
        this.accept(ws, req, url).finally(() => this.pending.delete(ws));
      });
    });
  }

  /** Closes every socket with 1001 and waits (at most the grace period) for them to go. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    const sockets = [...this.pending, ...[...this.clients].map((c) => c.ws)];
    for (const c of [...this.clients]) this.remove(c);
    await Promise.all(sockets.map((ws) => this.closeSocket(ws, 'goingAway', 'The bridge is shutting down.')));
  }

  private closeSocket(
    ws: WebSocket,
    reason: CloseReason,
    message: string,
    retryAfter?: number,
  ): Promise<void> {
    return new Promise((resolve) => {
      if (ws.readyState === ws.CLOSED) return resolve();
      if (ws.readyState === ws.OPEN) {
        const notice: CloseNotice = { type: 'closing', closeCode: CLOSE_CODES[reason].code, reason, message };
        if (retryAfter !== undefined) notice.retryAfter = retryAfter;
        ws.send(JSON.stringify(notice));
      }
      const timer = setTimeout(() => ws.terminate(), this.opts.closeGraceMs);
      timer.unref();
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.close(CLOSE_CODES[reason].code, reasonText(message));
    });
  }

  /** The session cookie's token, when the upgrade carries no key (a key always wins). */
  private cookieOf(req: IncomingMessage): string | undefined {
    if (!this.deps.browser) return undefined;
    const key = credentialFrom(req.headers) ?? keyFromProtocols(req.headers['sec-websocket-protocol']);
    return key === undefined ? this.deps.browser.tokenOf(req.headers) : undefined;
  }

  private async accept(ws: WebSocket, req: IncomingMessage, url: URL): Promise<void> {
    const token = credentialFrom(req.headers) ?? keyFromProtocols(req.headers['sec-websocket-protocol']);
    const credential: IncomingHttpHeaders = token ? { authorization: `Bearer ${token}` } : {};
    const ip = this.deps.clientAddress ? this.deps.clientAddress(req) : req.socket.remoteAddress;
    const cookie = this.cookieOf(req);
    const browser = this.deps.browser;
    const recheck =
      cookie !== undefined && browser
        ? () => browser.resolve(cookie)
        : () => this.deps.auth.authenticate(credential, ip);
    let client: Client;
    try {
      const principal = await this.authenticate(recheck);
      const filter = await this.filterFor(principal, url.searchParams);
      client = { ws, principal, recheck, filter, alive: true, cookie: cookie !== undefined, url };
    } catch (err) {
      const e =
        err instanceof CloseError
          ? err
          : (() => {
              this.deps.log.error({ err }, 'live events: setting up a socket failed');
              return new CloseError('internalError', 'The bridge failed to set up this socket.');
            })();
      await this.closeSocket(ws, e.reason, e.message, e.retryAfter);
      return;
    }
    if (ws.readyState !== ws.OPEN || this.closing) return;
    // Counted once authenticated and checked in the same tick as the add, so concurrent upgrades cannot overshoot.
    const caps = [
      { what: 'user', open: this.perUser, id: client.principal.user.id, max: this.opts.maxSocketsPerUser },
      { what: 'key', open: this.perKey, id: client.principal.key.id, max: this.opts.maxSocketsPerKey },
    ];
    for (const cap of caps) {
      const open = cap.open.get(cap.id) ?? 0;
      if (open >= cap.max) {
        await this.closeSocket(
          ws,
          'rateLimited',
          `Too many live-event sockets for this ${cap.what} (${open} open, at most ${cap.max}); close one first.`,
        );
        return;
      }
    }
    for (const cap of caps) cap.open.set(cap.id, (cap.open.get(cap.id) ?? 0) + 1);
    this.clients.add(client);
    ws.on('pong', () => {
      client.alive = true;
    });
    ws.on('close', () => this.remove(client));
    // Clients have nothing to say (pongs are control frames): data sent here is a client that is
    // broken or flooding the bridge, and each message would cost a parse for nothing. Reading stops
    // and the socket closes.
    ws.on('message', () => {
      if (!this.clients.has(client)) return;
      ws.pause();
      this.drop(
        client,
        'unexpectedMessage',
        'This socket only sends events; a client sends nothing but pongs.',
      );
    });
    this.logAdminWatch(client);
    const { user } = client.principal;
    ws.send(
      JSON.stringify({
        type: 'hello',
        protocolVersion: PROTOCOL_VERSION,
        user: { id: user.id, email: user.email, role: user.role, team: user.team },
        serverTime: new Date().toISOString(),
        heartbeatMs: this.opts.heartbeatMs,
      } satisfies BridgeEvent),
    );
    // The bus has a listener only while someone is connected, so publishers can skip building events.
    this.unsubscribe ??= this.deps.bus.subscribe((event, audience) => this.send(event, audience));
    this.heartbeat ??= setInterval(() => this.beat(), this.opts.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Forgets a client; the last one out unsubscribes from the bus and stops the heartbeat. */
  private remove(c: Client): boolean {
    if (!this.clients.delete(c)) return false;
    for (const [open, id] of [
      [this.perUser, c.principal.user.id],
      [this.perKey, c.principal.key.id],
    ] as const) {
      const left = (open.get(id) ?? 1) - 1;
      if (left <= 0) open.delete(id);
      else open.set(id, left);
    }
    if (this.clients.size === 0) {
      this.unsubscribe?.();
      this.unsubscribe = undefined;
      if (this.heartbeat) clearInterval(this.heartbeat);
      this.heartbeat = undefined;
    }
    return true;
  }

  private async authenticate(check: () => Promise<Principal>): Promise<Principal> {
    try {
      return await check();
    } catch (err) {
      if (isBridgeError(err) && err.code === 'rate_limited') {
        const seconds = Number(err.headers['retry-after']);
        throw new CloseError('rateLimited', err.message, Number.isFinite(seconds) ? seconds : undefined);
      }
      if (isBridgeError(err)) throw new CloseError('unauthorized', err.message);
      throw err;
    }
  }

  private async filterFor(principal: Principal, q: URLSearchParams): Promise<Filter> {
    const me = principal.user;
    const admin = me.role === 'admin';
    let types: Set<BridgeEventType> | null = null;
    const typesParam = q.get('types');
    if (typesParam) {
      types = new Set();
      for (const t of typesParam.split(',').map((s) => s.trim())) {
        if (!isEventType(t)) throw new CloseError('badRequest', `Unknown event type "${t}".`);
        types.add(t);
      }
    }
    let userId: string | null = null;
    const user = q.get('user');
    if (user) {
      if (user === 'me' || user === me.id || user.toLowerCase() === me.email) userId = me.id;
      else if (!admin) throw new CloseError('forbidden', 'Members may watch only their own events.');
      else {
        try {
          userId = (await this.deps.identity.findUser(user)).id;
        } catch (err) {
          if (isBridgeError(err)) throw new CloseError('badRequest', `No user ${user}.`);
          throw err;
        }
      }
    }
    const team = q.get('team');
    if (team && !admin) throw new CloseError('forbidden', 'Only admins may watch a team.');
    return { userId, team: team || null, types };
  }

  /** An admin watching anyone's events but their own leaves a trace in the access log, as reads do. */
  private logAdminWatch(c: Client): void {
    const me = c.principal.user;
    if (me.role !== 'admin' || c.filter.userId === me.id) return;
    this.deps.store
      .appendAccessLog({
        id: `acc_${randomUUID()}`,
        at: new Date().toISOString(),
        adminId: me.id,
        adminEmail: me.email,
        route: `GET ${EVENTS_PATH}`,
        subjectUserId: c.filter.userId,
        query: Object.fromEntries(c.url.searchParams),
      })
      .catch((err: unknown) => this.deps.log.error({ err }, 'failed to record an admin watch'));
  }

  private send(event: BridgeEvent, audience: Audience): void {
    let text: string | undefined;
    for (const c of this.clients) {
      if (!wants(c, event, audience)) continue;
      if (c.ws.bufferedAmount > this.opts.maxBufferedBytes) {
        this.drop(c, 'slowConsumer', 'Too many unread events; reconnect and reload.');
        continue;
      }
      text ??= JSON.stringify(event);
      c.ws.send(text);
    }
  }

  private drop(c: Client, reason: CloseReason, message: string): void {
    if (!this.remove(c)) return;
    if (reason === 'slowConsumer') {
      this.deps.log.warn(
        { userId: c.principal.user.id, bufferedBytes: c.ws.bufferedAmount },
        'live events: dropped a slow consumer',
      );
    }
    void this.closeSocket(c.ws, reason, message);
  }

  /** Pings every client; one that did not answer the last ping, or whose key no longer works, is dropped. */
  private beat(): void {
    for (const c of this.clients) {
      if (!c.alive) {
        this.remove(c);
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
      void this.recheck(c);
    }
  }

  /**
   * Re-checks the sockets of one user now rather than at the next heartbeat: after their keys were
   * revoked or they were deactivated (SCIM), each is closed with 4001 at once.
   */
  async recheckUser(userId: string): Promise<void> {
    await Promise.all(
      [...this.clients].filter((c) => c.principal.user.id === userId).map((c) => this.recheck(c)),
    );
  }

  /**
   * Re-checks the sockets opened with a session cookie, after a session ended (a sign-out here or on
   * another replica, or one pruned): each whose session is gone is closed with 4001 at once.
   */
  async recheckSessions(): Promise<void> {
    // Sessions change in bursts (a sign-in prunes the expired ones, each a change): one round at a
    // time, and one more after it for whatever changed meanwhile.
    if (this.sessionsRound) {
      this.sessionsAgain = true;
      return this.sessionsRound;
    }
    this.sessionsRound = (async () => {
      do {
        this.sessionsAgain = false;
        await Promise.all([...this.clients].filter((c) => c.cookie).map((c) => this.recheck(c)));
      } while (this.sessionsAgain);
    })().finally(() => {
      this.sessionsRound = undefined;
    });
    return this.sessionsRound;
  }

  /** As recheckUser, for the sockets opened with one key (revoked, or its expiry changed). */
  async recheckKey(keyId: string): Promise<void> {
    await Promise.all(
      [...this.clients].filter((c) => c.principal.key.id === keyId).map((c) => this.recheck(c)),
    );
  }

  private recheck(c: Client): Promise<void> {
    return c.recheck().then(
      // The user as they are now: an admin made a member (or moved to another team) sees from now
      // on what a member of that team sees, not what they could see when the socket opened.
      (fresh) => {
        const promoted = fresh.user.role === 'admin' && c.principal.user.role !== 'admin';
        c.principal = fresh;
        // A member made an admin sees everyone's events from now on: that is watching, as an
        // admin's socket opened now would be, and goes in the access log the same way.
        if (promoted && this.clients.has(c)) this.logAdminWatch(c);
      },
      (err: unknown) => {
        if (isAccessRefusal(err)) this.drop(c, 'unauthorized', err.message);
        // Anything else (the store unreachable) keeps the socket: the key is checked again next beat.
        else this.deps.log.warn({ err }, 'live events: re-checking a key failed; checking again next beat');
      },
    );
  }
}

/**
 * The route as fastify sees it (access rule, route table); upgrades never reach fastify's router.
 * A plain GET without `Upgrade: websocket` gets 400.
 */
export function liveEventsRoutes(live: LiveEvents): FastifyPluginAsync {
  return async (app) => {
    const opts = { config: { access: 'member' }, websocket: true } as RouteShorthandOptions;
    app.get(EVENTS_PATH, opts, async () => {
      throw new BridgeError(
        'invalid_request',
        `${EVENTS_PATH} is a WebSocket endpoint: connect with Upgrade: websocket.`,
      );
    });
    live.attach(app.server);
    app.addHook('preClose', async () => live.close());
  };
}
