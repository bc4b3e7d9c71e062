import type { FastifyBaseLogger } from 'fastify';
import type { Audience } from '../core/audience';
import type { Principal } from '../core/principal';
import { BridgeError } from '../errors';
import type { EventBus } from '../events/bus';
import type { Store } from '../store/types';
import { CredentialCipher } from './cipher';
import { McpConnection } from './connection';
import { type CredentialInfo, McpCredentials } from './credentials';
import { authorise, BridgeOAuthProvider, CALLBACK_PATH, PendingAuthorisations, redirectOf } from './oauth';
import { hasTransportValues, openTransport, sealTransport } from './sealed-transport';
import {
  injectedName,
  loadServersFile,
  McpConfigError,
  type McpServerBodyT,
  type McpServerConfig,
  normalise,
  publicView,
} from './servers';
import { type SessionTool, ToolSession } from './session';
import type { McpSettings } from './settings';

/** A per-user connection that failed is tried again no sooner than this. */
const RETRY_MS = 30_000;
/** Warnings remembered for WARN_EVERY_MS, at most. */
const WARNED_KEPT = 1000;
/** The same warning about the same server goes to the same audience at most this often. */
const WARN_EVERY_MS = 60_000;

/** A server as one user can reach it through the MCP gateway (server/gateway). */
export interface UserServer {
  config: McpServerConfig;
  /** Undefined: a per-user server the user has no (usable) credential for yet. */
  conn: McpConnection | undefined;
  /** This server's tool-call limit. */
  timeoutMs: number;
}

interface UserConnection {
  conn: McpConnection;
  lastUsed: number;
}

export interface McpHubDeps {
  settings: McpSettings;
  store: Store;
  log: FastifyBaseLogger;
  bus: EventBus;
  /** The bridge's environment, for secrets the config file names (`auth.fromEnv`). */
  env: Readonly<Record<string, string | undefined>>;
  /** Variables every stdio server starts with (the egress proxy's), under its own `env`. */
  childEnv?: Readonly<Record<string, string>>;
}

/** A server as admins see it: its config (secrets hidden) and how its connection is doing. */
export type ServerView = Record<string, unknown>;

/**
 * Every configured MCP server and the connections to them: one shared connection per server whose
 * credential (none, or a shared secret) is the same for everyone, and one per user for servers with
 * per-user credentials. Builds each request's {@link ToolSession}; never fails a request because a
 * server is down, misconfigured or refuses a credential: those tools are left out, with a warning.
 */
export class McpHub {
  private readonly fileServers = new Map<string, McpServerConfig>();
  private readonly servers = new Map<string, McpServerConfig>();
  private readonly shared = new Map<string, McpConnection>();
  private readonly users = new Map<string, UserConnection>();
  private readonly warned = new Map<string, number>();
  private readonly cipher: CredentialCipher | undefined;
  readonly credentials: McpCredentials;
  private readonly pending: PendingAuthorisations;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly changeListeners = new Set<(userId?: string) => void>();

  constructor(private readonly d: McpHubDeps) {
    this.cipher = d.settings.credentialsKey ? new CredentialCipher(d.settings.credentialsKey) : undefined;
    this.pending = new PendingAuthorisations(d.store);
    this.credentials = new McpCredentials(d.store, this.cipher, d.log);
  }

  /** Reads the file and the stored servers, and starts connecting; `ready()` resolves when every first attempt settled. */
  async start(): Promise<void> {
    for (const s of loadServersFile(this.d.settings.configFile)) this.fileServers.set(s.name, s);
    for (const s of this.fileServers.values()) this.servers.set(s.name, s);
    for (const s of await this.d.store.listDocs<McpServerConfig>('mcp_server'))
      this.servers.set(s.name, await this.sealStored(s));
    await this.credentials.load();
    for (const s of this.servers.values()) this.connectShared(s);
    const every = Math.min(this.d.settings.refreshMs, 60_000);
    this.timer = setInterval(() => void this.tick(), every);
    this.timer.unref();
  }

  /** Resolves once every shared connection's current attempt has settled (tests, start-up logs). */
  async ready(): Promise<void> {
    await Promise.all([...this.shared.values()].map((c) => c.settled()));
  }

  get hasServers(): boolean {
    return this.servers.size > 0;
  }

  private warn(server: string, message: string, audience: Audience): void {
    const key = `${server}\0${audience.userId ?? ''}\0${message}`;
    const now = Date.now();
    if ((this.warned.get(key) ?? 0) > now - WARN_EVERY_MS) return;
    if (this.warned.size >= WARNED_KEPT) {
      for (const [k, at] of this.warned) if (at <= now - WARN_EVERY_MS) this.warned.delete(k);
      // A server whose error text differs on every call (a request id in it) would keep every one
      // of them for a minute: past the bound the oldest go first (a Map iterates in insertion order).
      for (const k of this.warned.keys()) {
        if (this.warned.size < WARNED_KEPT) break;
        this.warned.delete(k);
      }
    }
    this.warned.set(key, now);
    this.d.log.warn({ server, userId: audience.userId, reason: message }, 'mcp: server skipped');
    this.d.bus.publish({ type: 'mcp.warning', at: new Date(now).toISOString(), server, message }, audience);
  }

  private sharedSecret(s: McpServerConfig): string | undefined {
    const a = s.auth;
    if (a.type !== 'secret') return undefined;
    if (a.plainSecret !== null) return a.plainSecret;
    if (a.fromEnv !== null) return this.d.env[a.fromEnv];
    if (a.sealedSecret !== null && this.cipher)
      return this.cipher.open(a.sealedSecret, `mcp_server:${s.name}`);
    return undefined;
  }

  /**
   * A definition stored before header and env values were sealed: sealed and stored again now that
   * a credentials key is here (without one it keeps working as it is).
   */
  private async sealStored(s: McpServerConfig): Promise<McpServerConfig> {
    if (!this.cipher || s.source !== 'api' || s.transportSealed) return s;
    const sealed = sealTransport(s, this.cipher);
    if (sealed !== s) await this.d.store.putDoc('mcp_server', s.name, sealed);
    return sealed;
  }

  /** `userId`: the user a per-user connection is for, the only one its tool changes concern. */
  private connection(
    s: McpServerConfig,
    credential?: string,
    provider?: BridgeOAuthProvider,
    userId?: string,
  ): McpConnection {
    const opened = openTransport(s, this.cipher, (name, reason) =>
      this.d.log.error({ server: s.name, value: name }, `mcp: a header or env value is left out: ${reason}`),
    );
    return new McpConnection(opened, {
      connectTimeoutMs: this.d.settings.connectTimeoutMs,
      log: this.d.log,
      childEnv: this.d.childEnv,
      credential,
      authProvider: provider,
      onTools: () => this.changed(userId),
    });
  }

  /**
   * Tells `listener` whenever what users may be offered can have changed: a server was defined,
   * replaced or deleted (here or, through the change feed, on another replica) or a server's tool
   * list changed. `userId` when only that user's offer changed (their own connection or
   * credential for a per-user server): no one else is told of it. Returns the unsubscribe.
   */
  onChange(listener: (userId?: string) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  private changed(userId?: string): void {
    for (const l of this.changeListeners) l(userId);
  }

  private connectShared(s: McpServerConfig): void {
    if (!s.enabled || s.auth.type === 'per_user') return;
    let secret: string | undefined;
    let missing = 'its shared secret is not available (missing environment variable or credentials key)';
    try {
      secret = this.sharedSecret(s);
    } catch (err) {
      // Sealed with another credentials key, or damaged: the server stays down until an admin sets it again.
      this.d.log.error(
        { err, server: s.name },
        'mcp: the shared secret cannot be opened (was AIBRIDGE_MCP_CREDENTIALS_KEY changed?)',
      );
      missing = 'its shared secret cannot be opened with the credentials key (was the key changed?)';
    }
    const conn = this.connection(s, secret);
    this.shared.set(s.name, conn);
    if (s.auth.type === 'secret' && secret === undefined) {
      conn.state = 'down';
      conn.lastError = missing;
      this.warn(s.name, conn.lastError, { userId: null, team: null });
      return;
    }
    void conn.connect().then(() => {
      if (conn.state === 'down') this.warn(s.name, conn.lastError ?? 'down', { userId: null, team: null });
      else this.d.log.info({ server: s.name, tools: conn.tools.length }, 'mcp: connected');
    });
  }

  private async dropConnections(name: string): Promise<void> {
    const closing: Promise<void>[] = [];
    const shared = this.shared.get(name);
    if (shared) closing.push(shared.close());
    this.shared.delete(name);
    for (const [key, u] of this.users) {
      if (u.conn.server.name !== name) continue;
      closing.push(u.conn.close());
      this.users.delete(key);
    }
    await Promise.all(closing);
  }

  /** Refreshes tool lists that are due, reconnects shared servers that were down, closes idle per-user connections. */
  private async tick(): Promise<void> {
    const now = Date.now();
    const due = (c: McpConnection): boolean =>
      c.state === 'down' || Date.parse(c.refreshedAt ?? '1970-01-01') < now - this.d.settings.refreshMs;
    for (const [name, c] of this.shared) {
      if (!due(c)) continue;
      const wasDown = c.state === 'down';
      await c.refresh();
      if (c.state === 'down' && !wasDown)
        this.warn(name, c.lastError ?? 'down', { userId: null, team: null });
    }
    for (const [key, u] of this.users) {
      if (u.lastUsed < now - this.d.settings.idleMs) {
        this.users.delete(key);
        await u.conn.close();
      } else if (u.conn.state === 'ready' && due(u.conn)) await u.conn.refresh();
    }
  }

  /** The user's connection to a per-user server: made (and awaited) on first use, retried after failures. */
  private async userConnection(s: McpServerConfig, userId: string): Promise<McpConnection | undefined> {
    const cred = this.credentials.get(s.name, userId);
    if (!cred) return undefined;
    if (cred.kind === 'oauth' && !cred.tokens) return undefined;
    const key = `${s.name}\0${userId}`;
    let u = this.users.get(key);
    if (!u) {
      const conn =
        cred.kind === 'token'
          ? this.connection(s, cred.token, undefined, userId)
          : this.connection(
              s,
              undefined,
              new BridgeOAuthProvider(s, userId, this.credentials, this.cipher, redirectOf(cred) ?? ''),
              userId,
            );
      u = { conn, lastUsed: Date.now() };
      this.users.set(key, u);
      await conn.connect();
    } else if (u.conn.state === 'down' && u.conn.attemptedAt < Date.now() - RETRY_MS) {
      await u.conn.connect();
    }
    await u.conn.settled();
    u.lastUsed = Date.now();
    return u.conn;
  }

  /**
   * The tools a request of this user gets, none of them named like one of the client's `reserved`
   * tools. Null when there are none. Servers that are down are skipped with a warning.
   */
  async sessionFor(principal: Principal, reserved: ReadonlySet<string>): Promise<ToolSession | null> {
    if (this.servers.size === 0) return null;
    const { user } = principal;
    const audience = { userId: user.id, team: user.team };
    const tools: SessionTool[] = [];
    const taken = new Set(reserved);
    const connections = await Promise.all(
      [...this.servers.values()]
        .filter((s) => s.enabled)
        .map(async (s) => {
          if (s.auth.type !== 'per_user') {
            const c = this.shared.get(s.name);
            await c?.settled();
            return { s, c };
          }
          return { s, c: await this.userConnection(s, user.id) };
        }),
    );
    for (const { s, c } of connections) {
      if (!c) continue;
      if (c.state !== 'ready') {
        this.warn(s.name, c.lastError ?? `the server is ${c.state}`, audience);
        continue;
      }
      for (const tool of c.tools) {
        const name = injectedName(s.name, tool.name, taken);
        if (taken.has(name)) continue;
        taken.add(name);
        tools.push({
          offered: {
            name,
            description: tool.description ?? tool.title ?? tool.name,
            inputSchema: tool.inputSchema as Record<string, unknown>,
          },
          tool,
          server: s.name,
          connection: c,
          timeoutMs: s.timeoutMs ?? this.d.settings.callTimeoutMs,
        });
      }
    }
    return tools.length > 0
      ? new ToolSession(tools, this.d.settings.resultLimit, (server, message) =>
          this.warn(server, message, audience),
        )
      : null;
  }

  /**
   * Every enabled server as this user reaches it (the MCP gateway): the shared connection, or the
   * user's own (opened now if need be); `conn` undefined when they hold no credential for it.
   */
  async serversFor(principal: Principal): Promise<UserServer[]> {
    return Promise.all(
      [...this.servers.values()].filter((s) => s.enabled).map((s) => this.userServer(s, principal.user.id)),
    );
  }

  /**
   * One enabled server as this user reaches it, or undefined when there is none of that name: a
   * gateway call of one server waits for that server's connection only, never for another's
   * (one still connecting, or hanging, holds up its own calls alone).
   */
  async serverFor(principal: Principal, name: string): Promise<UserServer | undefined> {
    const s = this.servers.get(name);
    return s?.enabled ? this.userServer(s, principal.user.id) : undefined;
  }

  private async userServer(s: McpServerConfig, userId: string): Promise<UserServer> {
    let conn: McpConnection | undefined;
    if (s.auth.type !== 'per_user') {
      conn = this.shared.get(s.name);
      await conn?.settled();
    } else conn = await this.userConnection(s, userId);
    return { config: s, conn, timeoutMs: s.timeoutMs ?? this.d.settings.callTimeoutMs };
  }

  /** Reports a server the gateway had to skip for this user, the same way injection does. */
  skipped(server: string, message: string, audience: Audience): void {
    this.warn(server, message, audience);
  }

  private status(s: McpServerConfig): Record<string, unknown> {
    if (!s.enabled) return { state: 'disabled' };
    if (s.auth.type === 'per_user') {
      const conns = [...this.users.values()].filter((u) => u.conn.server.name === s.name);
      return {
        state: 'per_user',
        connections: conns.length,
        ready: conns.filter((u) => u.conn.state === 'ready').length,
      };
    }
    const c = this.shared.get(s.name);
    return {
      state: c?.state ?? 'down',
      error: c?.lastError ?? null,
      tools: c?.tools.map((t) => t.name) ?? [],
      refreshedAt: c?.refreshedAt ?? null,
      listChanges: c?.listChanges ?? 0,
    };
  }

  listServers(): ServerView[] {
    return [...this.servers.values()].map((s) => ({ ...publicView(s), status: this.status(s) }));
  }

  getServer(name: string): ServerView {
    const s = this.servers.get(name);
    if (!s) throw new BridgeError('mcp_server_not_found', `No MCP server named ${name}.`);
    return { ...publicView(s), status: this.status(s) };
  }

  /** Creates or replaces a server (overriding a file entry of the same name) and connects to it. */
  async putServer(name: string, body: McpServerBodyT): Promise<ServerView> {
    if (body.transport.type === 'stdio' && !this.d.settings.apiStdio)
      throw new BridgeError(
        'invalid_request',
        'stdio servers run commands on the bridge host: define them in the config file, or set AIBRIDGE_MCP_API_STDIO=true.',
      );
    if (body.auth?.type === 'secret' || body.auth?.type === 'per_user') {
      if (!this.cipher) throw new BridgeError('mcp_no_credentials_key');
    }
    if (hasTransportValues(body.transport) && !this.cipher)
      throw new BridgeError(
        'mcp_no_credentials_key',
        'Header and env values of an MCP server are stored sealed: set AIBRIDGE_MCP_CREDENTIALS_KEY to store them.',
      );
    const cipher = this.cipher;
    let config: McpServerConfig;
    try {
      config = normalise(
        name,
        body,
        'api',
        cipher ? (secret, purpose) => cipher.seal(secret, slotOf(name, purpose)) : null,
      );
    } catch (err) {
      if (err instanceof McpConfigError)
        throw new BridgeError('invalid_request', err.message, { cause: err });
      throw err;
    }
    if (cipher) config = sealTransport(config, cipher);
    await this.d.store.putDoc('mcp_server', name, config);
    await this.dropConnections(name);
    this.servers.set(name, config);
    this.connectShared(config);
    await this.shared.get(name)?.settled();
    this.changed();
    return this.getServer(name);
  }

  /**
   * Reads the API-defined servers again (another replica sharing the store changed them): changed
   * ones reconnect, deleted ones fall back to the file entry of the same name or go.
   */
  async reloadServers(): Promise<void> {
    const stored = new Map(
      (await this.d.store.listDocs<McpServerConfig>('mcp_server')).map((s) => [s.name, s]),
    );
    for (const name of new Set([...this.servers.keys(), ...stored.keys()])) {
      if (this.closed) return;
      const next = stored.get(name) ?? this.fileServers.get(name);
      const current = this.servers.get(name);
      if (next && current && JSON.stringify(next) === JSON.stringify(current)) continue;
      await this.dropConnections(name);
      if (next) {
        this.servers.set(name, next);
        this.connectShared(next);
      } else this.servers.delete(name);
      this.changed();
    }
  }

  /**
   * Reads the per-user credentials again (another replica changed them): a user whose token was
   * replaced or removed there loses the connection made with the old one, so their next call here
   * connects with the new one (or finds none); their gateway streams hear of any change. An OAuth
   * connection is kept through a refresh made elsewhere: it reads the stored tokens each request.
   */
  async reloadCredentials(): Promise<void> {
    for (const { server, userId, bound } of await this.credentials.load()) {
      if (this.closed) return;
      if (bound) await this.dropUser(server, userId);
      else this.changed(userId);
    }
  }

  /** Deletes a server defined through the API; a file entry of the same name then applies again. */
  async deleteServer(name: string): Promise<boolean> {
    const existed = await this.d.store.deleteDoc('mcp_server', name);
    if (!existed) {
      if (this.fileServers.has(name))
        throw new BridgeError('invalid_request', `${name} is defined in the config file; change it there.`);
      throw new BridgeError('mcp_server_not_found', `No MCP server named ${name}.`);
    }
    await this.dropConnections(name);
    const fromFile = this.fileServers.get(name);
    if (fromFile) {
      this.servers.set(name, fromFile);
      this.connectShared(fromFile);
    } else {
      this.servers.delete(name);
      await this.credentials.deleteServer(name);
    }
    this.changed();
    return true;
  }

  private requireServer(name: string): McpServerConfig {
    const s = this.servers.get(name);
    if (!s) throw new BridgeError('mcp_server_not_found', `No MCP server named ${name}.`);
    return s;
  }

  /** The servers a user may use, and what they hold for each. */
  userView(userId: string): Record<string, unknown>[] {
    return [...this.servers.values()]
      .filter((s) => s.enabled)
      .map((s) => {
        const cred: CredentialInfo | null = this.credentials.info(s.name, userId);
        const conn =
          s.auth.type === 'per_user' ? this.users.get(`${s.name}\0${userId}`)?.conn : this.shared.get(s.name);
        return {
          name: s.name,
          description: s.description,
          auth: s.auth.type,
          oauth: s.auth.oauth !== null,
          credential: cred
            ? {
                kind: cred.kind,
                authorized: cred.authorized,
                unreadable: cred.unreadable,
                updatedAt: cred.updatedAt,
              }
            : null,
          state: conn?.state ?? (s.auth.type === 'per_user' ? 'not_connected' : 'down'),
          tools:
            conn?.state === 'ready' ? conn.tools.map((t) => injectedName(s.name, t.name, new Set())) : [],
        };
      });
  }

  /** Stores a user's own token for a per-user server; their next request connects with it. */
  async putToken(name: string, userId: string, token: string): Promise<void> {
    const s = this.requireServer(name);
    if (s.auth.type !== 'per_user')
      throw new BridgeError('invalid_request', `${name} does not take per-user credentials.`);
    await this.credentials.put(name, userId, { kind: 'token', token });
    await this.dropUser(name, userId);
  }

  async deleteCredential(name: string, userId: string): Promise<boolean> {
    this.requireServer(name);
    await this.dropUser(name, userId);
    return this.credentials.delete(name, userId);
  }

  /**
   * Forgets every credential `userId` stored for MCP servers (a user deleted by the identity
   * provider): their tokens for other services must not outlive them here. Connections made with
   * them close; other replicas follow the change feed.
   */
  async forgetUser(userId: string): Promise<void> {
    for (const name of this.credentials.serversOf(userId)) {
      await this.dropUser(name, userId);
      await this.credentials.delete(name, userId);
    }
  }

  private async dropUser(name: string, userId: string): Promise<void> {
    const key = `${name}\0${userId}`;
    const u = this.users.get(key);
    this.users.delete(key);
    await u?.conn.close();
    this.changed(userId);
  }

  /** Starts a user's OAuth authorisation: the URL to send their browser to, or null when already authorised. */
  async startOAuth(
    name: string,
    userId: string,
    origin: string,
  ): Promise<{ authorizationUrl: string | null }> {
    const s = this.requireServer(name);
    if (s.auth.type !== 'per_user' || !s.auth.oauth)
      throw new BridgeError('invalid_request', `${name} does not use OAuth.`);
    if (!this.credentials.enabled) throw new BridgeError('mcp_no_credentials_key');
    // Without AIBRIDGE_PUBLIC_URL the origin is the request's Host, which its sender chooses: a
    // member naming their own host would have a colleague's code sent there when the colleague
    // approves the link, and could finish it as themselves, past the page that asks to confirm
    // (docs/mcp.md#per-user-oauth). A loopback origin sends the code to the browser's own machine.
    if (this.d.settings.publicUrl === undefined && !isLoopbackOrigin(origin))
      throw new BridgeError('mcp_oauth_needs_public_url');
    const redirect = `${this.d.settings.publicUrl ?? origin}${CALLBACK_PATH}`;
    const state = await this.pending.add(name, userId, redirect);
    const provider = new BridgeOAuthProvider(s, userId, this.credentials, this.cipher, redirect, state);
    let result: 'AUTHORIZED' | 'REDIRECT';
    try {
      result = await authorise(provider, s);
    } catch (err) {
      throw new BridgeError(
        'upstream_unreachable',
        `The MCP server's authorisation failed: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (result === 'AUTHORIZED') {
      await this.dropUser(name, userId);
      return { authorizationUrl: null };
    }
    return { authorizationUrl: provider.authorizationUrl?.toString() ?? null };
  }

  /**
   * Whose authorisation `state` is, for the page that asks the browser's user to confirm it: the
   * server and the bridge account it would be connected to. Undefined when unknown or expired.
   */
  async pendingOAuth(state: string): Promise<{ server: string; email: string } | undefined> {
    const p = await this.pending.peek(state);
    if (!p) return undefined;
    const user = await this.d.store.getUserById(p.userId);
    return { server: p.server, email: user?.email ?? p.userId };
  }

  /** Finishes an authorisation the server redirected back with `code` and `state`. */
  async finishOAuth(state: string, code: string): Promise<{ server: string }> {
    const p = await this.pending.take(state);
    if (!p)
      throw new BridgeError('invalid_request', 'This authorisation is unknown or expired; start it again.');
    const s = this.requireServer(p.server);
    // Started before the user was deactivated or deleted (SCIM): a deletion forgets their tokens
    // (forgetUser), and this would store one again, for a user who may no longer use it.
    const user = await this.d.store.getUserById(p.userId);
    if (!user || user.deactivatedAt)
      throw new BridgeError('user_inactive', 'This account is deactivated; nothing was connected.');
    const provider = new BridgeOAuthProvider(s, p.userId, this.credentials, this.cipher, p.redirect, state);
    try {
      await authorise(provider, s, code);
    } catch (err) {
      throw new BridgeError(
        'upstream_unreachable',
        `The MCP server's token exchange failed: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    await this.dropUser(p.server, p.userId);
    return { server: p.server };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.all([
      ...[...this.shared.values()].map((c) => c.close()),
      ...[...this.users.values()].map((u) => u.conn.close()),
    ]);
    this.shared.clear();
    this.users.clear();
  }
}

function slotOf(name: string, purpose: 'secret' | 'client_secret'): string {
  return purpose === 'secret' ? `mcp_server:${name}` : `mcp_server:${name}:client_secret`;
}

/** `http(s)://localhost…`, `127.x.x.x` or `[::1]`: an origin only the browser's own machine answers. */
function isLoopbackOrigin(origin: string): boolean {
  let host: string;
  try {
    host = new URL(origin).hostname;
  } catch {
    return false;
  }
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
