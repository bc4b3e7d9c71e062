import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { User } from '../../shared/identity';
import type { KeyRecord, Principal } from '../core/principal';
import { BridgeError } from '../errors';
import {
  addressKey,
  evictionFor,
  ownOldestWhenFull,
  STARTS_PER_ADDRESS_PER_MINUTE,
} from '../http/address-share';
import { AuthThrottle } from '../identity/auth-throttle';
import { type IdentityService, renewalBound } from '../identity/identity-service';
import type { KeyHasher } from '../identity/keys';
import type { MemberWrites } from '../identity/member-writes';
import type { Store } from '../store/types';

/** Access tokens live an hour: a stolen one is short-lived, and revocation is checked on every use anyway. */
export const ACCESS_TOKEN_TTL_MS = 3_600_000;
/** A refresh token unused this long is dead; each use rotates it and starts the period again. */
export const REFRESH_TOKEN_TTL_MS = 30 * 86_400_000;
/** How long one approval lasts at most (its key's expiry): then the client asks the user again. */
export const GRANT_TTL_MS = 90 * 86_400_000;
/** Between the redirect back and the client's token request (RFC 6749 §4.1.2 recommends ≤ 10 min). */
export const CODE_TTL_MS = 5 * 60_000;
/** How long the user has to sign in and approve. */
export const PENDING_TTL_MS = 10 * 60_000;
/** Registered clients never approved are forgotten after a day: registration is unauthenticated. */
const UNUSED_CLIENT_TTL_MS = 86_400_000;
/** Caps on what unauthenticated requests can make the store hold. */
const MAX_UNUSED_CLIENTS = 1000;
const MAX_PENDING = 1000;
/**
 * Applications one user has approved at once (a grant each): approving one more ends their oldest
 * grant. With a client no grant refers to pruned as an unused one (`register`), the clients and
 * grants approvals keep are bounded by the users, not by how often a member registers and approves.
 * Each ended grant's key stays, revoked, as every revoked key does (records name their key), about
 * 0.3 KB where a client's metadata was up to 18 KB; member changes are paced (60 a minute).
 */
export const MAX_GRANTS_PER_USER = 20;

const ACCESS_PREFIX = 'aibo_';
const REFRESH_PREFIX = 'aibr_';
const CODE_PREFIX = 'aibc_';
const SECRET = '[A-Za-z0-9_-]{43}';
const ACCESS_RE = new RegExp(`^${ACCESS_PREFIX}${SECRET}$`);
/** A refresh token names its grant, so presenting a rotated one is recognised as reuse (RFC 9700 §4.14.2). */
const REFRESH_RE = new RegExp(`^${REFRESH_PREFIX}(g_[a-f0-9]{32})\\.(${SECRET})$`);
const CODE_RE = new RegExp(`^${CODE_PREFIX}${SECRET}$`);
const HANDLE_RE = /^[A-Za-z0-9_-]{43}$/;
/** RFC 7636 §4.1: the verifier's alphabet and length. */
const VERIFIER_RE = /^[A-Za-z0-9._~-]{43,128}$/;
/** An S256 challenge: base64url of a SHA-256, no padding. */
export const S256_CHALLENGE_RE = /^[A-Za-z0-9_-]{43}$/;

/** Whether a bearer token is one of these access tokens (the gateway tells them from bridge keys by this). */
export function looksLikeAccessToken(token: string): boolean {
  return ACCESS_RE.test(token);
}

function secret(): string {
  return randomBytes(32).toString('base64url');
}

/** RFC 7636 §4.6: BASE64URL(SHA256(verifier)) equals the challenge, compared in constant time. */
export function pkceMatches(verifier: string, challenge: string): boolean {
  if (!VERIFIER_RE.test(verifier)) return false;
  const computed = Buffer.from(createHash('sha256').update(verifier, 'ascii').digest('base64url'));
  const expected = Buffer.from(challenge);
  return computed.length === expected.length && timingSafeEqual(computed, expected);
}

/** A client registered with `POST /oauth/register` (kind `oauth_client`): public, no secret. */
export interface OAuthClient {
  id: string;
  name: string;
  redirectUris: string[];
  createdAt: string;
  /** When a user first approved it; unapproved clients are forgotten after a day. */
  approvedAt: string | null;
  /** addressKey of whoever registered it (address-share.ts). */
  addr?: string;
}

/** An authorization request waiting for the user (kind `oauth_pending`), by the SHA-256 of its handle. */
interface PendingAuthorization {
  id: string;
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  state: string | null;
  scope: string | null;
  resource: string;
  createdAt: string;
  expiresAt: string;
  /** addressKey of the browser that asked. */
  addr?: string;
}

/** An issued authorization code (kind `oauth_code`), by its keyed hash; kept after use to catch a replay. */
interface StoredCode {
  id: string;
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  resource: string;
  scope: string | null;
  grantId: string;
  expiresAt: string;
  usedAt: string | null;
}

/**
 * One user's approval of one client (kind `oauth_grant`). It owns a bridge key of its own (never
 * shown to anyone): requests on its tokens run as that key, the user sees and can revoke it in
 * their key list, and revoking it, or deactivating the user, ends the grant's tokens at once.
 */
interface StoredGrant {
  id: string;
  clientId: string;
  userId: string;
  keyId: string;
  resource: string;
  scope: string | null;
  createdAt: string;
  /** Keyed hash of the one live refresh token's secret part. */
  refreshHash: string;
  refreshExpiresAt: string;
}

/** An access token (kind `oauth_access_token`), by its keyed hash. */
interface StoredAccessToken {
  id: string;
  grantId: string;
  resource: string;
  expiresAt: string;
}

export interface TokenSet {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
  scope?: string;
}

/** RFC 6749 §5.2 (and RFC 8707 `invalid_target`) errors, answered in the OAuth error shape. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unsupported_grant_type'
  | 'invalid_target'
  | 'invalid_client_metadata'
  | 'invalid_redirect_uri'
  | 'temporarily_unavailable';

export class OAuthError extends Error {
  constructor(
    readonly code: OAuthErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'OAuthError';
  }
}

/** What the consent page shows of a waiting authorization. */
export interface PendingView {
  clientId: string;
  clientName: string;
  redirectUri: string;
  resource: string;
  scope: string | null;
  createdAt: string;
  expiresAt: string;
}

export interface AuthorizationRequest {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  state: string | null;
  scope: string | null;
  resource: string;
}

/**
 * The bridge's OAuth 2.1 authorization server state for the MCP gateway (docs/mcp.md#oauth-for-mcp-clients):
 * clients, pending authorizations, codes, grants and access tokens, all store documents so any
 * replica serves the next step. Secrets (codes, tokens) are random and stored only as keyed hashes.
 */
export class McpGrants {
  /** Authorizations started per address (docs/mcp.md): each one stored is a write. */
  private readonly starts: AuthThrottle;

  constructor(
    private readonly store: Store,
    private readonly hasher: KeyHasher,
    private readonly identity: Pick<IdentityService, 'issueKey'>,
    private readonly now: () => Date,
    /** A refresh rewrites the grant and its token: a member's are paced as their `/api` changes are. */
    private readonly writes?: Pick<MemberWrites, 'take'>,
    /** AIBRIDGE_DEVICE_KEY_MAX_DAYS: a grant approved with a device key ends by that key's renewal bound. */
    private readonly deviceKeyMaxDays = 0,
  ) {
    this.starts = new AuthThrottle(STARTS_PER_ADDRESS_PER_MINUTE, () => now().getTime());
  }

  private at(offsetMs = 0): string {
    return new Date(this.now().getTime() + offsetMs).toISOString();
  }

  private expired(iso: string): boolean {
    return Date.parse(iso) <= this.now().getTime();
  }

  async register(name: string, redirectUris: string[], ip: string): Promise<OAuthClient> {
    // A client no grant refers to any more (its grants ended: revoked, replaced, misused) is kept
    // as one never approved is, a day from its registration and among the 1000: else a member
    // registering, approving and ending grants of their own grew the store for good.
    const granted = new Set((await this.store.listDocs<StoredGrant>('oauth_grant')).map((g) => g.clientId));
    const live: OAuthClient[] = [];
    for (const c of await this.store.listDocs<OAuthClient>('oauth_client')) {
      if (c.approvedAt && granted.has(c.id)) continue;
      if (Date.parse(c.createdAt) + UNUSED_CLIENT_TTL_MS <= this.now().getTime())
        await this.store.deleteDoc('oauth_client', c.id);
      else live.push(c);
    }
    // Full: the oldest unapproved client of the address that registered the most makes room.
    const evict = evictionFor(live, MAX_UNUSED_CLIENTS);
    if (evict) await this.store.deleteDoc('oauth_client', evict.id);
    const client: OAuthClient = {
      id: `mcpc_${randomUUID().replaceAll('-', '')}`,
      name,
      redirectUris,
      createdAt: this.at(),
      approvedAt: null,
      addr: addressKey(ip),
    };
    await this.store.putDoc('oauth_client', client.id, client);
    return client;
  }

  async client(id: string): Promise<OAuthClient | undefined> {
    if (!/^mcpc_[a-f0-9]{32}$/.test(id)) return undefined;
    return this.store.getDoc<OAuthClient>('oauth_client', id);
  }

  /** Keeps a checked authorization request until the user answers; returns the handle for the consent page. */
  async begin(req: AuthorizationRequest, ip: string): Promise<string> {
    this.starts.take(
      ip,
      () =>
        new OAuthError(
          'temporarily_unavailable',
          'Too many authorization requests started from this address; try again in a minute.',
        ),
    );
    const live: PendingAuthorization[] = [];
    for (const p of await this.store.listDocs<PendingAuthorization>('oauth_pending')) {
      if (this.expired(p.expiresAt)) await this.store.deleteDoc('oauth_pending', p.id);
      else live.push(p);
    }
    const addr = addressKey(ip);
    // An address's own oldest makes room for its newest; with the store full, the oldest request
    // of the address that made the most, never everyone's.
    const evict = ownOldestWhenFull(live, addr) ?? evictionFor(live, MAX_PENDING);
    if (evict) await this.store.deleteDoc('oauth_pending', evict.id);
    const handle = secret();
    const pending: PendingAuthorization = {
      id: sha256(handle),
      ...req,
      createdAt: this.at(),
      expiresAt: this.at(PENDING_TTL_MS),
      addr,
    };
    await this.store.putDoc('oauth_pending', pending.id, pending);
    return handle;
  }

  private async pending(handle: string): Promise<PendingAuthorization> {
    const gone = new BridgeError(
      'not_found',
      'This authorization request is unknown, answered or expired: start again from the application.',
    );
    if (!HANDLE_RE.test(handle)) throw gone;
    const p = await this.store.getDoc<PendingAuthorization>('oauth_pending', sha256(handle));
    if (!p) throw gone;
    if (this.expired(p.expiresAt)) {
      await this.store.deleteDoc('oauth_pending', p.id);
      throw gone;
    }
    return p;
  }

  async view(handle: string): Promise<PendingView> {
    const p = await this.pending(handle);
    const client = await this.client(p.clientId);
    if (!client) throw new BridgeError('not_found', 'The application that asked has been removed.');
    return {
      clientId: client.id,
      clientName: client.name,
      redirectUri: p.redirectUri,
      resource: p.resource,
      scope: p.scope,
      createdAt: p.createdAt,
      expiresAt: p.expiresAt,
    };
  }

  /**
   * The signed-in user's answer. Approved: a grant (with its own key) and a single-use code.
   * Returns where the browser goes next: the client's redirect URI with the code or `access_denied`.
   */
  async answer(
    handle: string,
    user: User,
    approve: boolean,
    issuer: string,
    /** The key the approval was made with (an admin-page session's): a device key's bound holds for the grant too. */
    approver?: Pick<KeyRecord, 'renewable' | 'createdAt' | 'renewableUntil' | 'expiresAt'>,
  ): Promise<string> {
    const p = await this.pending(handle);
    // Single use, whatever the answer.
    await this.store.deleteDoc('oauth_pending', p.id);
    const back = new URL(p.redirectUri);
    if (p.state !== null) back.searchParams.set('state', p.state);
    // RFC 9207: the client can tell which authorization server answered.
    back.searchParams.set('iss', issuer);
    const client = await this.client(p.clientId);
    if (!approve || !client) {
      back.searchParams.set('error', 'access_denied');
      back.searchParams.set('error_description', 'The user did not approve the request.');
      return back.href;
    }
    // Approved with a device key: the grant ends where that key's renewals do, so a device key
    // cannot pass itself on as a 90-day grant (docs/sso.md).
    const bound = approver?.renewable
      ? renewalBound(approver, this.deviceKeyMaxDays)
      : Number.POSITIVE_INFINITY;
    if (bound <= this.now().getTime() + 60_000)
      throw new BridgeError(
        'sign_in_renewal_ended',
        'This device key can approve no more sign-ins: its renewals have ended (AIBRIDGE_DEVICE_KEY_MAX_DAYS). Sign in through the identity provider and approve it there.',
      );
    // One grant per user and client: authorizing again (a lost token, a new login) replaces the
    // earlier one, so keys do not pile up in the user's list. And at most MAX_GRANTS_PER_USER
    // clients per user: the oldest other grants end to make room.
    const mine: StoredGrant[] = [];
    for (const g of await this.store.listDocs<StoredGrant>('oauth_grant')) {
      if (g.userId !== user.id) continue;
      if (g.clientId === client.id) await this.revokeGrant(g.id);
      else mine.push(g);
    }
    mine.sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0));
    for (const g of mine.slice(0, Math.max(0, mine.length - (MAX_GRANTS_PER_USER - 1))))
      await this.revokeGrant(g.id);
    // Before the client is marked approved: a refused key (too many) approves nothing.
    const key = await this.identity.issueKey(user, {
      name: `MCP gateway OAuth: ${client.name}`.slice(0, 100),
      expiresAt: new Date(Math.min(this.now().getTime() + GRANT_TTL_MS, bound)).toISOString(),
    });
    const grant: StoredGrant = {
      id: `g_${randomUUID().replaceAll('-', '')}`,
      clientId: client.id,
      userId: user.id,
      keyId: key.id,
      resource: p.resource,
      scope: p.scope,
      createdAt: this.at(),
      // No refresh token until the code is exchanged.
      refreshHash: '',
      refreshExpiresAt: this.at(),
    };
    await this.store.putDoc('oauth_grant', grant.id, grant);
    if (!client.approvedAt)
      await this.store.putDoc('oauth_client', client.id, { ...client, approvedAt: this.at() });
    const code = CODE_PREFIX + secret();
    const stored: StoredCode = {
      id: this.hasher.hash(code),
      clientId: client.id,
      redirectUri: p.redirectUri,
      codeChallenge: p.codeChallenge,
      resource: p.resource,
      scope: p.scope,
      grantId: grant.id,
      expiresAt: this.at(CODE_TTL_MS),
      usedAt: null,
    };
    await this.store.putDoc('oauth_code', stored.id, stored);
    back.searchParams.set('code', code);
    return back.href;
  }

  /** `grant_type=authorization_code` (RFC 6749 §4.1.3 with RFC 7636 §4.5 and RFC 8707). */
  async exchangeCode(f: {
    code: string;
    clientId: string;
    redirectUri: string | undefined;
    codeVerifier: string | undefined;
    resource: string | undefined;
  }): Promise<TokenSet> {
    const bad = new OAuthError('invalid_grant', 'The authorization code is invalid, used or expired.');
    if (!CODE_RE.test(f.code)) throw bad;
    await this.sweepCodes();
    const code = await this.store.getDoc<StoredCode>('oauth_code', this.hasher.hash(f.code));
    if (!code || this.expired(code.expiresAt)) throw bad;
    if (code.usedAt !== null) {
      // A replayed code: whoever holds it may have the tokens too, so the grant ends (RFC 6749 §4.1.2).
      await this.revokeGrant(code.grantId);
      throw bad;
    }
    await this.store.putDoc('oauth_code', code.id, { ...code, usedAt: this.at() });
    try {
      this.checkExchange(code, f);
    } catch (err) {
      // The code is spent either way; the grant made for it would be a key nobody can use.
      await this.revokeGrant(code.grantId);
      throw err;
    }
    return this.issue((await this.liveGrant(code.grantId)).grant);
  }

  private checkExchange(
    code: StoredCode,
    f: {
      clientId: string;
      redirectUri: string | undefined;
      codeVerifier: string | undefined;
      resource: string | undefined;
    },
  ): void {
    if (code.clientId !== f.clientId)
      throw new OAuthError('invalid_grant', 'The authorization code was issued to another client.');
    if (f.redirectUri !== code.redirectUri)
      throw new OAuthError('invalid_grant', 'redirect_uri does not match the authorization request.');
    if (f.codeVerifier === undefined)
      throw new OAuthError('invalid_request', 'code_verifier is required (PKCE).');
    if (!pkceMatches(f.codeVerifier, code.codeChallenge))
      throw new OAuthError('invalid_grant', 'code_verifier does not match the code_challenge.');
    if (f.resource !== undefined && f.resource !== code.resource)
      throw new OAuthError('invalid_target', `resource must be ${code.resource}.`);
  }

  /** `grant_type=refresh_token` with rotation: the presented token is spent, a new one comes back. */
  async refresh(f: {
    refreshToken: string;
    clientId: string;
    resource: string | undefined;
  }): Promise<TokenSet> {
    const bad = new OAuthError('invalid_grant', 'The refresh token is invalid, used or expired.');
    const m = REFRESH_RE.exec(f.refreshToken);
    if (!m) throw bad;
    const grant = await this.store.getDoc<StoredGrant>('oauth_grant', m[1]!);
    if (!grant || grant.clientId !== f.clientId) throw bad;
    const presented = Buffer.from(this.hasher.hash(m[2]!));
    const current = Buffer.from(grant.refreshHash);
    if (current.length !== presented.length || !timingSafeEqual(current, presented)) {
      // A spent refresh token came back: one of its holders is not the client (RFC 9700 §4.14.2).
      await this.revokeGrant(grant.id);
      throw bad;
    }
    if (this.expired(grant.refreshExpiresAt)) throw bad;
    if (f.resource !== undefined && f.resource !== grant.resource)
      throw new OAuthError('invalid_target', `resource must be ${grant.resource}.`);
    const live = await this.liveGrant(grant.id);
    // Past the pace the refresh is refused (429) with the presented token unspent: it works later.
    // Each one deletes, stores and stores again (the token, the grant): three rewrites of the
    // embedded store's db.json, which a client refreshing in a loop would otherwise make unpaced.
    this.writes?.take(live.user);
    return this.issue(live.grant);
  }

  /** The grant and its user, if its key and user still work; else `invalid_grant`. */
  private async liveGrant(id: string): Promise<{ grant: StoredGrant; user: User }> {
    const grant = await this.store.getDoc<StoredGrant>('oauth_grant', id);
    const principal = grant && (await this.principalOf(grant));
    if (!grant || !principal) throw new OAuthError('invalid_grant', 'The authorization has been revoked.');
    // A deactivation over SCIM also revokes the grant's key (principalOf is then undefined), so a
    // reactivated user approves the client again; this covers a user marked deactivated otherwise.
    if (principal.user.deactivatedAt)
      throw new OAuthError('invalid_grant', 'The user has been deactivated by the identity provider.');
    return { grant, user: principal.user };
  }

  private async issue(grant: StoredGrant): Promise<TokenSet> {
    // The grant's earlier access tokens end here: a refreshed client uses the new one, and a
    // client refreshing in a loop then holds one token document, not one an hour old per refresh.
    await this.sweepAccessTokens(grant.id);
    const access = ACCESS_PREFIX + secret();
    const refreshSecret = secret();
    const token: StoredAccessToken = {
      id: this.hasher.hash(access),
      grantId: grant.id,
      resource: grant.resource,
      expiresAt: this.at(ACCESS_TOKEN_TTL_MS),
    };
    await this.store.putDoc('oauth_access_token', token.id, token);
    await this.store.putDoc('oauth_grant', grant.id, {
      ...grant,
      refreshHash: this.hasher.hash(refreshSecret),
      refreshExpiresAt: this.at(REFRESH_TOKEN_TTL_MS),
    });
    return {
      access_token: access,
      token_type: 'Bearer',
      expires_in: ACCESS_TOKEN_TTL_MS / 1000,
      refresh_token: `${REFRESH_PREFIX}${grant.id}.${refreshSecret}`,
      ...(grant.scope ? { scope: grant.scope } : {}),
    };
  }

  /**
   * Who an access token speaks for at `resource`, or `unauthorized`. Checked against the store on
   * every request: the grant, its key (revoked, expired) and the user (deactivated).
   */
  async authenticate(token: string, resource: string): Promise<Principal> {
    const refused = (why: string) => new BridgeError('unauthorized', why);
    if (!looksLikeAccessToken(token)) throw refused('That is not a valid access token.');
    const stored = await this.store.getDoc<StoredAccessToken>('oauth_access_token', this.hasher.hash(token));
    if (!stored) throw refused('That access token is unknown or revoked.');
    if (this.expired(stored.expiresAt)) throw refused('That access token has expired.');
    // Audience binding (RFC 8707): a token for another resource is no token here.
    if (stored.resource !== resource) throw refused(`That access token is not for ${resource}.`);
    const grant = await this.store.getDoc<StoredGrant>('oauth_grant', stored.grantId);
    if (!grant) throw refused('The authorization behind that access token has been revoked.');
    const principal = await this.principalOf(grant);
    if (!principal) throw refused('The authorization behind that access token has been revoked.');
    if (principal.user.deactivatedAt)
      throw new BridgeError(
        'user_deactivated',
        `User ${principal.user.email} has been deactivated by the identity provider.`,
      );
    this.store.touchKey(principal.key.id, this.at());
    return principal;
  }

  /** The grant's key and user, or undefined when the key is revoked or expired or the user gone. */
  private async principalOf(grant: StoredGrant): Promise<Principal | undefined> {
    const key = await this.store.getKey(grant.keyId);
    if (!key || key.revokedAt !== null || (key.expiresAt !== null && this.expired(key.expiresAt)))
      return undefined;
    const user = await this.store.getUserById(grant.userId);
    if (!user || key.userId !== user.id) return undefined;
    return { user, key };
  }

  /** Ends a grant: its document (so its tokens stop working) and its key. */
  private async revokeGrant(id: string): Promise<void> {
    const grant = await this.store.getDoc<StoredGrant>('oauth_grant', id);
    if (!grant) return;
    await this.store.deleteDoc('oauth_grant', id);
    await this.store.revokeKey(grant.keyId, this.at());
  }

  /** Deletes expired access tokens, and all of `grantId`'s. */
  private async sweepAccessTokens(grantId: string): Promise<void> {
    for (const t of await this.store.listDocs<StoredAccessToken>('oauth_access_token'))
      if (t.grantId === grantId || this.expired(t.expiresAt))
        await this.store.deleteDoc('oauth_access_token', t.id);
  }

  private async sweepCodes(): Promise<void> {
    for (const c of await this.store.listDocs<StoredCode>('oauth_code'))
      if (this.expired(c.expiresAt)) await this.store.deleteDoc('oauth_code', c.id);
  }
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
