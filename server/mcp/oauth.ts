import { randomBytes } from 'node:crypto';
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';
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

/** Authorisations users started and have not finished, by their `state` parameter. */
export class PendingAuthorisations {
  private readonly pending = new Map<
    string,
    { server: string; userId: string; redirect: string; expires: number }
  >();

  add(server: string, userId: string, redirect: string): string {
    const now = Date.now();
    for (const [k, v] of this.pending) if (v.expires < now) this.pending.delete(k);
    const state = randomBytes(24).toString('base64url');
    this.pending.set(state, { server, userId, redirect, expires: now + PENDING_MS });
    return state;
  }

  /** The authorisation `state` belongs to, left in place (the confirmation page reads it). */
  peek(state: string): { server: string; userId: string } | undefined {
    const p = this.pending.get(state);
    return p && p.expires >= Date.now() ? { server: p.server, userId: p.userId } : undefined;
  }

  /** The authorisation a callback's `state` belongs to; each state works once. */
  take(state: string): { server: string; userId: string; redirect: string } | undefined {
    const p = this.pending.get(state);
    this.pending.delete(state);
    return p && p.expires >= Date.now() ? p : undefined;
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
