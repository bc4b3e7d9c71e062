import { createHash, randomBytes } from 'node:crypto';
import type { Principal } from '../core/principal';
import { BridgeError } from '../errors';
import type { Authenticator } from '../identity/auth';
import type { MemberWrites } from '../identity/member-writes';
import type { Store } from '../store/types';
import { AMBIGUOUS_COOKIE } from './cookies';

/**
 * How long a sign-in lasts by default (AIBRIDGE_ADMIN_SESSION_HOURS sets another); the page asks
 * for the key again after that.
 */
const SESSION_TTL_MS = 12 * 3_600_000;

const TOKEN_PREFIX = 'aibs_';
const TOKEN_RE = /^aibs_[A-Za-z0-9_-]{43}$/;

/** A sign-in as stored: the token's SHA-256, never the token; the key it was made with. */
export interface StoredSession {
  /** Hex SHA-256 of the cookie token (also the document id). */
  id: string;
  keyId: string;
  userId: string;
  createdAt: string;
  expiresAt: string;
}

export interface SignIn {
  /** The cookie value: shown once, to the browser, and never stored. */
  token: string;
  principal: Principal;
  expiresAt: string;
}

function digest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * Admin page sign-ins: a bridge key is exchanged for an opaque random token that the browser keeps
 * in an HttpOnly cookie. Sessions live in the store (kind `admin_session`) so every replica knows
 * them; each use re-checks the key it was made with, so revoking or expiring that key signs the
 * browser out on its next request.
 */
export class Sessions {
  constructor(
    private readonly store: Store,
    private readonly auth: Authenticator,
    private readonly now: () => Date = () => new Date(),
    readonly ttlMs: number = SESSION_TTL_MS,
    /** Sessions one key may hold (AIBRIDGE_ADMIN_SESSIONS_PER_KEY): a sign-in beyond it ends the oldest. */
    readonly maxPerKey: number = 20,
    /** A sign-in is a session stored: members' are paced like their other changes. */
    private readonly writes?: MemberWrites,
  ) {}

  /**
   * Counts a sign-in against the member's pace of changes (docs/api.md#member-writes), or throws
   * `429 rate_limited`. The SSO callback asks first, before it writes the user and the session's key.
   */
  pace(user: Pick<Principal['user'], 'id' | 'role'>): void {
    this.writes?.take(user);
  }

  /** Checks the key as any API call would (throttle included) and opens a session for it. */
  async signIn(key: string, ip: string | undefined, opts: { paced?: boolean } = {}): Promise<SignIn> {
    const principal = await this.auth.authenticate({ authorization: `Bearer ${key}` }, ip);
    if (!opts.paced) this.pace(principal.user);
    await this.prune(principal.key.id);
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const now = this.now();
    const session: StoredSession = {
      id: digest(token),
      keyId: principal.key.id,
      userId: principal.user.id,
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + this.ttlMs).toISOString(),
    };
    await this.store.putDoc('admin_session', session.id, session);
    return { token, principal, expiresAt: session.expiresAt };
  }

  /** The caller behind a cookie token, or `unauthorized`. */
  async resolve(token: string): Promise<Principal> {
    if (token === AMBIGUOUS_COOKIE)
      throw new BridgeError(
        'unauthorized',
        "Two admin session cookies were sent; another site on this host may have set one. Clear this site's cookies in the browser and sign in again.",
      );
    const signedOut = new BridgeError('unauthorized', 'The admin session has ended; sign in again.');
    if (!TOKEN_RE.test(token)) throw signedOut;
    const id = digest(token);
    const session = await this.store.getDoc<StoredSession>('admin_session', id);
    if (!session) throw signedOut;
    const now = this.now();
    if (Date.parse(session.expiresAt) <= now.getTime()) {
      await this.store.deleteDoc('admin_session', id);
      throw signedOut;
    }
    const key = await this.store.getKey(session.keyId);
    const user = key && (await this.store.getUserById(key.userId));
    const keyDead =
      !key ||
      key.revokedAt !== null ||
      (key.expiresAt !== null && Date.parse(key.expiresAt) <= now.getTime());
    if (keyDead || !user || user.deactivatedAt) {
      await this.store.deleteDoc('admin_session', id);
      throw new BridgeError('unauthorized', 'The key this session was opened with no longer works.');
    }
    this.store.touchKey(key.id, now.toISOString());
    return { user, key };
  }

  /** Ends the session; returns whether there was one. */
  async signOut(token: string): Promise<boolean> {
    if (!TOKEN_RE.test(token)) return false;
    return this.store.deleteDoc('admin_session', digest(token));
  }

  /**
   * Drops expired sessions (on each sign-in, so the list stays as short as the people signed in),
   * then the oldest of `keyId`'s until the new one fits: a script signing in in a loop cannot
   * grow the store, and it ends its own sessions, nobody else's.
   */
  private async prune(keyId: string): Promise<void> {
    const now = this.now().getTime();
    const live: StoredSession[] = [];
    for (const s of await this.store.listDocs<StoredSession>('admin_session')) {
      if (Date.parse(s.expiresAt) <= now) await this.store.deleteDoc('admin_session', s.id);
      else if (s.keyId === keyId) live.push(s);
    }
    live.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    for (const s of live.slice(0, Math.max(0, live.length - this.maxPerKey + 1)))
      await this.store.deleteDoc('admin_session', s.id);
  }
}
