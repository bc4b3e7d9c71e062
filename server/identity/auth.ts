import type { IncomingHttpHeaders } from 'node:http';
import type { User } from '../../shared/identity';
import { isoTime } from '../core/iso-time';
import type { KeyRecord, Principal } from '../core/principal';
import { RecentMap } from '../core/recent-map';
import { BridgeError, isBridgeError } from '../errors';
import type { Store, StoreChange } from '../store/types';
import type { AuthCache } from './auth-cache';
import type { AuthThrottle } from './auth-throttle';
import { type KeyHasher, looksLikeKey } from './keys';

/**
 * The header that carries the bridge key when the provider's own auth headers carry the user's own
 * provider credential (bring your own key, docs/routing.md).
 */
export const BRIDGE_KEY_HEADER = 'x-aibridge-key';

/**
 * The bridge key: `X-AIBridge-Key` when present (then the provider auth headers are the user's
 * own credential), else from the provider's usual auth header.
 */
export function credentialFrom(headers: IncomingHttpHeaders): string | undefined {
  const own = headers[BRIDGE_KEY_HEADER];
  if (typeof own === 'string' && own.trim() !== '') return own.trim();
  return providerCredentialFrom(headers);
}

/** The credential in a provider's usual auth header: `x-api-key` (Anthropic style) or `Authorization: Bearer` (OpenAI style). */
export function providerCredentialFrom(headers: IncomingHttpHeaders): string | undefined {
  // `api-key` is how Azure OpenAI clients send theirs, `x-goog-api-key` Gemini's (docs/providers.md).
  for (const name of ['x-api-key', 'api-key', 'x-goog-api-key']) {
    const apiKey = headers[name];
    if (typeof apiKey === 'string' && apiKey.trim() !== '') return apiKey.trim();
  }
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  return undefined;
}

/**
 * The refusal of a credential that is no bridge key at all. A provider's own key in the header a
 * client sends first (Claude Code sends ANTHROPIC_API_KEY as `x-api-key` over the bridge key in
 * ANTHROPIC_AUTH_TOKEN) is named by its kind, from its public prefix only, with what to do.
 */
function notBridgeKey(token: string): string {
  const kind = token.startsWith('sk-ant-')
    ? "Anthropic's (sk-ant-…)"
    : token.startsWith('sk-')
      ? "OpenAI's (sk-…)"
      : token.startsWith('AIza')
        ? "Google's (AIza…)"
        : undefined;
  if (!kind) return 'That is not a valid bridge key.';
  return `That is not a bridge key: it looks like a provider key, ${kind}. Send the bridge key instead (with Claude Code, unset ANTHROPIC_API_KEY: it is sent before ANTHROPIC_AUTH_TOKEN).`;
}

/** Whether an error is a credential's refusal (revoked, expired, unknown, its user deactivated), not an outage. */
export function isAccessRefusal(err: unknown): err is BridgeError {
  return isBridgeError(err) && (err.code === 'unauthorized' || err.code === 'user_deactivated');
}

/** Why a found key may not be used now (revoked, expired), or undefined. */
export function keyRefusal(key: KeyRecord, now: Date): BridgeError | undefined {
  if (key.revokedAt) return new BridgeError('unauthorized', `Bridge key ${key.prefix}… has been revoked.`);
  if (key.expiresAt && Date.parse(key.expiresAt) <= now.getTime())
    return new BridgeError('unauthorized', `Bridge key ${key.prefix}… has expired.`);
  return undefined;
}

/** Why a key's user may not use it (deactivated by the identity provider), or undefined. */
export function userRefusal(user: User): BridgeError | undefined {
  return user.deactivatedAt
    ? new BridgeError('user_deactivated', `User ${user.email} has been deactivated by the identity provider.`)
    : undefined;
}

/** Keys remembered for serving through a database outage, at most. */
const REMEMBERED_KEYS = 10_000;

/** Hashes of keys that authenticated, kept so a key in use is not HMAC'd on every request, at most. */
const HASHED_KEYS = 10_000;

export class Authenticator {
  /** By key hash: principals the store confirmed, and when (only with `rememberMs`). */
  private readonly remembered = new RecentMap<string, { principal: Principal; at: number }>(REMEMBERED_KEYS);
  /**
   * Key → its HMAC, for keys that authenticated only: a stream of unknown keys can neither grow it
   * nor push the keys in use out. It maps a key to its hash and no more; whether the key is still
   * valid is asked anew every request (revocation is immediate). The heap holds the keys of recent
   * requests anyway.
   */
  private readonly hashes = new RecentMap<string, string>(HASHED_KEYS);
  /** Key and user changes heard on the store's feed (`apply`), to tell a read that raced one. */
  private changesHeard = 0;

  /**
   * `rememberMs`: when the store cannot be reached (`store_unavailable`), a key the store
   * confirmed within this long is still accepted (AIBRIDGE_AUDIT_FAILURE=open: the admin chose to
   * serve through outages). Nobody can revoke a key while the database is down either. Unset:
   * every request needs the store.
   * `cache`: keys and users kept per replica (auth-cache.ts), so the common request asks the store
   * nothing; it must be fed the store's changes (`Store.watch`). Unset: the store is asked every time.
   */
  constructor(
    private readonly store: Store,
    private readonly hasher: KeyHasher,
    private readonly throttle?: AuthThrottle,
    private readonly now: () => Date = () => new Date(),
    private readonly onFailure: () => void = () => undefined,
    private readonly rememberMs?: number,
    private readonly cache?: AuthCache,
  ) {}

  /**
   * Resolves the caller or throws `unauthorized`. Expiry is checked on every request; a revocation,
   * renewal or user change reaches the cache through the store's change feed (within a second on
   * every replica, AUTH_CACHE_TTL_MS at worst if a notification is lost).
   */
  async authenticate(headers: IncomingHttpHeaders, ip?: string): Promise<Principal> {
    const token = credentialFrom(headers);
    if (!token)
      throw new BridgeError(
        'unauthorized',
        'A bridge key is required (x-api-key, Authorization: Bearer, X-AIBridge-Key, api-key or x-goog-api-key; ?key= on Gemini routes).',
      );
    try {
      return await this.check(token);
    } catch (err) {
      // The database gone or too busy to answer in time: a key seen recently is served from
      // memory, and no one's address is throttled for it.
      if (isBridgeError(err) && (err.code === 'store_unavailable' || err.code === 'server_busy'))
        return this.fromMemory(token, err);
      this.onFailure();
      // Only failures are throttled: a valid key is served even from a throttled address (many
      // developers may share one NAT or proxy address with whoever is guessing).
      this.throttle?.fail(
        ip,
        (seconds) =>
          new BridgeError('rate_limited', `Too many invalid keys from this address; retry in ${seconds}s.`, {
            headers: { 'retry-after': String(seconds) },
          }),
      );
      throw err;
    }
  }

  /**
   * A key or user change heard on the store's feed ends what is remembered of them: a key revoked
   * (or a user deactivated) just before an outage must not be served from memory during it. A
   * change made while the feed is down cannot be heard (docs/storage.md); a resync keeps the
   * memory, since it comes exactly when the database goes away, when the memory is needed.
   */
  apply(change: StoreChange): void {
    if (change.kind !== 'key' && change.kind !== 'user') return;
    this.changesHeard++;
    if (this.remembered.size === 0) return;
    // Deleting while iterating is safe: RecentMap's entries walk its Maps, which allow it.
    for (const [hash, { principal }] of this.remembered.entries())
      if (change.kind === 'key' ? principal.key.id === change.id : principal.user.id === change.id)
        this.remembered.delete(hash);
  }

  private fromMemory(token: string, outage: BridgeError): Principal {
    const hit = this.rememberMs === undefined ? undefined : this.remembered.get(this.hashOf(token));
    if (!hit || this.now().getTime() - hit.at > this.rememberMs!) throw outage;
    const { key } = hit.principal;
    if (key.expiresAt && Date.parse(key.expiresAt) <= this.now().getTime()) throw outage;
    return hit.principal;
  }

  private remember(hash: string, principal: Principal): void {
    if (this.rememberMs === undefined) return;
    this.remembered.set(hash, { principal, at: this.now().getTime() });
  }

  private async check(token: string): Promise<Principal> {
    if (!looksLikeKey(token)) throw new BridgeError('unauthorized', notBridgeKey(token));
    // A change heard while the reads below were under way may be newer than what they return.
    const heard = this.changesHeard;
    const hash = this.hashOf(token);
    const key = await this.keyByHash(hash);
    if (!key) throw new BridgeError('unauthorized', 'That is not a valid bridge key.');
    const now = this.now();
    const keyRefused = keyRefusal(key, now);
    if (keyRefused) throw keyRefused;
    const user = await this.userById(key.userId);
    if (!user) throw new BridgeError('unauthorized', 'That is not a valid bridge key.');
    const userRefused = userRefusal(user);
    if (userRefused) throw userRefused;
    return this.admitted(token, hash, key, user, now, heard === this.changesHeard);
  }

  /**
   * The caller at once when its key authenticated before and its key and user are in the
   * replica's cache, still valid (nearly every request): no promise per request. Anything else
   * goes through `authenticate`, so refusals, the failure throttle and outages behave as there.
   */
  authenticateNow(headers: IncomingHttpHeaders, ip?: string): Principal | Promise<Principal> {
    const token = credentialFrom(headers);
    const hash = token === undefined ? undefined : this.hashes.get(token);
    const key = hash === undefined ? undefined : this.cache?.key(hash);
    const user = key ? this.cache?.user(key.userId) : undefined;
    if (token !== undefined && hash !== undefined && key && user) {
      const now = this.now();
      // The same rules as `check`; a refusal is left to it, which words and counts it.
      if (!keyRefusal(key, now) && !userRefusal(user)) return this.admitted(token, hash, key, user, now);
    }
    return this.authenticate(headers, ip);
  }

  /** `current`: no key or user change was heard while it was read, so it may be remembered. */
  private admitted(
    token: string,
    hash: string,
    key: KeyRecord,
    user: User,
    now: Date,
    current = true,
  ): Principal {
    this.store.touchKey(key.id, isoTime(now.getTime()));
    if (current) this.remember(hash, { user, key });
    this.keepHash(token, hash);
    return { user, key };
  }

  private hashOf(token: string): string {
    return this.hashes.get(token) ?? this.hasher.hash(token);
  }

  /** Only after the key authenticated; the oldest entries go first once full. */
  private keepHash(token: string, hash: string): void {
    if (this.hashes.has(token)) return;
    this.hashes.set(token, hash);
  }

  private async keyByHash(hash: string): Promise<KeyRecord | undefined> {
    const cached = this.cache?.key(hash);
    if (cached) return cached;
    const mark = this.cache?.mark() ?? 0;
    const key = await this.store.findKeyByHash(hash);
    // Whatever the answer, an older memory of this key is out of date.
    this.remembered.delete(hash);
    if (key) this.cache?.putKey(mark, key);
    return key;
  }

  private async userById(id: string): Promise<User | undefined> {
    const cached = this.cache?.user(id);
    if (cached) return cached;
    const mark = this.cache?.mark() ?? 0;
    const user = await this.store.getUserById(id);
    if (user) this.cache?.putUser(mark, user);
    return user;
  }
}
