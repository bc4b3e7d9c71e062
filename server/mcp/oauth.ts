import { createHash, randomBytes } from 'node:crypto';
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';
import type { Store } from '../store/types';
import type { CredentialCipher } from './cipher';
import type { Credential, McpCredentials } from './credentials';
import type { McpServerConfig } from './servers';

type OAuthCredential = Extract<Credential, { kind: 'oauth' }> & { redirectUrl?: string };

/** Path of the bridge's OAuth redirect endpoint. */
export const CALLBACK_PATH = '/api/v1/mcp/oauth/callback';
/** How long an authorisation started by a user may take to come back. */
const PENDING_MS = 10 * 60_000;

/**
 * The SDK's OAuth client for one user and one server, kept in that user's sealed credential: the
 * client registration (dynamic unless the admin configured a client id), the PKCE verifier of an
 * authorisation in progress, and the tokens, which the SDK refreshes when the server says they expired.
 */
export class BridgeOAuthProvider implements OAuthClientProvider {
  /** Where the user must go to authorise; set when the SDK asks for a redirect. */
  authorizationUrl: URL | undefined;

  constructor(
    private readonly server: McpServerConfig,
    private readonly userId: string,
    private readonly creds: McpCredentials,
    private readonly cipher: CredentialCipher | undefined,
    private readonly redirect: string,
    private readonly stateValue = '',
  ) {}

  private current(): OAuthCredential {
    const c = this.creds.get(this.server.name, this.userId);
    return c?.kind === 'oauth' ? (c as OAuthCredential) : { kind: 'oauth' };
  }

  private async update(change: Partial<OAuthCredential>): Promise<void> {
    await this.creds.put(this.server.name, this.userId, {
      ...this.current(),
      ...change,
      redirectUrl: this.redirect,
    } as Credential);
  }

  get redirectUrl(): string {
    return this.redirect;
  }

  get clientMetadata(): OAuthClientMetadata {
    const o = this.server.auth.oauth;
    return {
      client_name: 'AI Bridge',
      redirect_uris: [this.redirect],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: o?.clientSecret ? 'client_secret_post' : 'none',
      ...(o && o.scopes.length > 0 ? { scope: o.scopes.join(' ') } : {}),
    };
  }

  state(): string {
    return this.stateValue;
  }

  clientInformation(): OAuthClientInformationMixed | undefined {
    const o = this.server.auth.oauth;
    if (o?.clientId) {
      let secret = o.clientSecret ?? undefined;
      if (secret && o.clientSecretSealed)
        secret = this.cipher?.open(secret, `mcp_server:${this.server.name}:client_secret`);
      return { client_id: o.clientId, ...(secret ? { client_secret: secret } : {}) };
    }
    return this.current().client;
  }

  async saveClientInformation(client: OAuthClientInformationMixed): Promise<void> {
    await this.update({ client });
  }

  tokens(): OAuthTokens | undefined {
    return this.current().tokens;
  }

  async saveTokens(tokens: OAuthTokens): Promise<void> {
    await this.update({ tokens, verifier: undefined });
  }

  redirectToAuthorization(url: URL): void {
    this.authorizationUrl = url;
  }

  async saveCodeVerifier(verifier: string): Promise<void> {
    await this.update({ verifier });
  }

  codeVerifier(): string {
    const v = this.current().verifier;
    if (!v) throw new Error('no authorisation in progress');
    return v;
  }

  async invalidateCredentials(scope: 'all' | 'client' | 'tokens' | 'verifier' | 'discovery'): Promise<void> {
    if (scope === 'discovery') return;
    const c = this.current();
    await this.update({
      client: scope === 'all' || scope === 'client' ? undefined : c.client,
      tokens: scope === 'all' || scope === 'tokens' ? undefined : c.tokens,
      verifier: scope === 'all' || scope === 'verifier' ? undefined : c.verifier,
    });
  }
}

/** One user's authorisation at one server under way, by the SHA-256 of its `state` (kind `mcp_oauth_pending`). */
interface StoredPending {
  server: string;
  userId: string;
  redirect: string;
  /** ms since the epoch. */
  expires: number;
}

/** Where a `state` is stored (its SHA-256); undefined for one no authorisation could have. */
function stateId(state: string): string | undefined {
  if (state === '' || state.length > 512) return undefined;
  return createHash('sha256').update(state).digest('hex');
}

/** A user's one authorisation under way at one server (kind `mcp_oauth_latest`). */
function slotOf(server: string, userId: string): string {
  return `${server}:${userId}`;
}

/**
 * Authorisations users started and have not finished, by their `state` parameter. They are store
 * documents, so the callback may reach any replica (no sticky sessions), and only the state's
 * SHA-256 is stored. A user has at most one under way per server (kind `mcp_oauth_latest` names
 * it): starting again replaces it, as starting again replaces the PKCE verifier it needs anyway,
 * so repeated starts cannot grow the store.
 */
export class PendingAuthorisations {
  constructor(
    private readonly store: Pick<Store, 'getDoc' | 'putDoc' | 'deleteDoc'>,
    private readonly now: () => number = Date.now,
  ) {}

  async add(server: string, userId: string, redirect: string): Promise<string> {
    const state = randomBytes(24).toString('base64url');
    const slot = slotOf(server, userId);
    const before = await this.store.getDoc<{ id: string }>('mcp_oauth_latest', slot);
    if (before) await this.store.deleteDoc('mcp_oauth_pending', before.id);
    const id = stateId(state)!;
    const doc: StoredPending = { server, userId, redirect, expires: this.now() + PENDING_MS };
    await this.store.putDoc('mcp_oauth_pending', id, doc);
    await this.store.putDoc('mcp_oauth_latest', slot, { id });
    return state;
  }

  /** The authorisation `state` belongs to, left in place (the confirmation page reads it). */
  async peek(state: string): Promise<{ server: string; userId: string } | undefined> {
    const id = stateId(state);
    const p = id === undefined ? undefined : await this.live(id);
    return p ? { server: p.server, userId: p.userId } : undefined;
  }

  /**
   * The authorisation a callback's `state` belongs to; each state works once: only the caller whose
   * delete removed it goes on, even when two callbacks arrive together at two replicas.
   */
  async take(state: string): Promise<{ server: string; userId: string; redirect: string } | undefined> {
    const id = stateId(state);
    if (id === undefined) return undefined;
    const p = await this.live(id);
    if (!p || !(await this.store.deleteDoc('mcp_oauth_pending', id))) return undefined;
    const slot = slotOf(p.server, p.userId);
    const latest = await this.store.getDoc<{ id: string }>('mcp_oauth_latest', slot);
    if (latest?.id === id) await this.store.deleteDoc('mcp_oauth_latest', slot);
    return { server: p.server, userId: p.userId, redirect: p.redirect };
  }

  private async live(id: string): Promise<StoredPending | undefined> {
    const p = await this.store.getDoc<StoredPending>('mcp_oauth_pending', id);
    return p && p.expires >= this.now() ? p : undefined;
  }
}

/** Starts (or, with a code, finishes) the authorisation of one user at one server. */
export async function authorise(
  provider: BridgeOAuthProvider,
  server: McpServerConfig,
  authorizationCode?: string,
): Promise<'AUTHORIZED' | 'REDIRECT'> {
  if (server.transport.type !== 'http') throw new Error('OAuth needs an http server');
  const scope = server.auth.oauth?.scopes.join(' ') || undefined;
  // Loaded on first use (server/mcp/rpc.ts says why).
  const { auth } = await import('@modelcontextprotocol/sdk/client/auth.js');
  return auth(provider, {
    serverUrl: server.transport.url,
    ...(authorizationCode ? { authorizationCode } : {}),
    ...(scope ? { scope } : {}),
  });
}

export function redirectOf(cred: Credential | undefined): string | undefined {
  return cred?.kind === 'oauth' ? (cred as OAuthCredential).redirectUrl : undefined;
}
