import type { FastifyBaseLogger } from 'fastify';
import * as oidc from 'openid-client';
import type { Clock } from '../clock';
import type { OidcSettings } from '../config';
import { BridgeError } from '../errors';

/** After a failed discovery, sign-ins within this time are answered `oidc_unavailable` without asking again. */
const DISCOVERY_RETRY_MS = 5_000;
/** Seconds any one request to the provider may take. */
const REQUEST_TIMEOUT_S = 10;
/** An ID token issued further than this in the bridge's future is refused (openid-client checks `exp` and `nbf`, not `iat`). */
const MAX_FUTURE_IAT_S = 60;

/** What a sign-in proved about the user: claims from a validated ID token (and the userinfo endpoint). */
export type OidcClaims = Readonly<Record<string, unknown>>;

export interface FlowChecks {
  state: string;
  nonce: string;
  codeVerifier: string;
}

/**
 * The bridge as an OpenID Connect relying party, on openid-client (certified; no JWT code of our
 * own): discovery from the issuer, the authorization code flow with PKCE, state and nonce, and the
 * ID token's signature, issuer, audience and expiry checked against the issuer's JWKS (refetched
 * when a token names a key the cache does not have). The provider is contacted lazily: one that
 * is down at start does not stop the bridge, and each sign-in retries discovery until it works.
 */
export class OidcRelyingParty {
  private server: oidc.ServerMetadata | undefined;
  private discovering: Promise<oidc.ServerMetadata> | undefined;
  private failedAt = Number.NEGATIVE_INFINITY;
  private config: oidc.Configuration | undefined;
  private configSkew = 0;
  private readonly insecure: boolean;

  constructor(
    private readonly settings: OidcSettings,
    private readonly clock: Clock,
    private readonly log: FastifyBaseLogger,
  ) {
    // config.ts allows http only for a provider on this machine.
    this.insecure = new URL(settings.issuer).protocol === 'http:';
  }

  /** The provider's authorization endpoint with this flow's PKCE challenge, state and nonce. */
  async authorizationUrl(flow: FlowChecks): Promise<URL> {
    const config = this.configuration(await this.metadata());
    return oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.settings.redirectUri,
      scope: this.settings.scopes.join(' '),
      state: flow.state,
      nonce: flow.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(flow.codeVerifier),
      code_challenge_method: 'S256',
    });
  }

  /**
   * Redeems the callback's code and validates what comes back; the claims of the ID token, with
   * those of the userinfo endpoint for what the token leaves out. Every failure is a BridgeError
   * whose message says what failed, never what the tokens held.
   */
  async finish(callbackQuery: string, flow: FlowChecks): Promise<OidcClaims> {
    const config = this.configuration(await this.metadata());
    const current = new URL(this.settings.redirectUri);
    current.search = callbackQuery;
    try {
      const tokens = await oidc.authorizationCodeGrant(config, current, {
        pkceCodeVerifier: flow.codeVerifier,
        expectedState: flow.state,
        expectedNonce: flow.nonce,
        idTokenExpected: true,
      });
      const idClaims = tokens.claims();
      if (!idClaims) throw new BridgeError('oidc_token_invalid', 'The provider sent no ID token.');
      if (idClaims.iat > this.clock.now() / 1000 + MAX_FUTURE_IAT_S)
        throw new BridgeError('oidc_token_invalid', 'The ID token is dated in the future; check the clocks.');
      let info: oidc.UserInfoResponse | undefined;
      if (tokens.access_token && config.serverMetadata().userinfo_endpoint)
        info = await oidc.fetchUserInfo(config, tokens.access_token, idClaims.sub);
      return Object.freeze({ ...info, ...idClaims });
    } catch (err) {
      throw this.failure(err);
    }
  }

  /** The provider's metadata, discovered once it answers; `oidc_unavailable` until then. */
  private async metadata(): Promise<oidc.ServerMetadata> {
    if (this.server) return this.server;
    if (this.clock.now() - this.failedAt < DISCOVERY_RETRY_MS)
      throw new BridgeError('oidc_unavailable', 'The identity provider could not be reached a moment ago.');
    this.discovering ??= this.discover()
      .then(
        (c) => {
          this.server = c.serverMetadata();
          this.log.info({ issuer: this.settings.issuer }, 'oidc: discovered the identity provider');
          return this.server;
        },
        (err: unknown) => {
          this.failedAt = this.clock.now();
          this.log.warn(
            { issuer: this.settings.issuer, reason: reasonOf(err) },
            'oidc: discovery failed; retried on the next sign-in',
          );
          throw new BridgeError('oidc_unavailable', undefined, { cause: err });
        },
      )
      .finally(() => {
        this.discovering = undefined;
      });
    return this.discovering;
  }

  /**
   * Discovery at the configured issuer; when the provider's issuer is that URL but for a trailing
   * slash, again at the provider's spelling. Configuration drops trailing slashes from URLs, while
   * an issuer identifier is compared exactly and some end in one (Entra ID v1's
   * `https://sts.windows.net/<tenant>/`); an admin may also type one the provider lacks.
   */
  private async discover(): Promise<oidc.Configuration> {
    const at = (issuer: URL) =>
      oidc.discovery(issuer, this.settings.clientId, undefined, this.clientAuth(), {
        execute: this.insecure ? [oidc.allowInsecureRequests] : [],
        timeout: REQUEST_TIMEOUT_S,
      });
    const configured = new URL(this.settings.issuer);
    try {
      return await at(configured);
    } catch (err) {
      const spelled = issuerButForSlash(err, configured);
      if (spelled === undefined) throw err;
      return at(spelled);
    }
  }

  /**
   * One Configuration (and so one JWKS cache) while the bridge's clock agrees with the process's;
   * a test clock that moves gets a new one, carrying the cached keys, with openid-client's notion
   * of "now" shifted to the bridge's clock so expiry follows the clock every other check uses.
   */
  private configuration(server: oidc.ServerMetadata): oidc.Configuration {
    const skew = Math.round((this.clock.now() - Date.now()) / 1000);
    if (this.config && skew === this.configSkew) return this.config;
    const config = new oidc.Configuration(
      server,
      this.settings.clientId,
      { [oidc.clockSkew]: skew },
      this.clientAuth(),
    );
    config.timeout = REQUEST_TIMEOUT_S;
    if (this.insecure) oidc.allowInsecureRequests(config);
    // openid-client trusts an ID token fetched over TLS without checking its signature unless told
    // to (OIDC Core 3.1.3.7 allows it); the bridge checks it against the issuer's JWKS, so a token
    // endpoint answer altered on the way (a TLS-inspecting proxy, a compromised hop) is refused.
    oidc.enableNonRepudiationChecks(config);
    const keys = this.config && oidc.getJwksCache(this.config);
    if (keys) oidc.setJwksCache(config, keys);
    this.config = config;
    this.configSkew = skew;
    return config;
  }

  private clientAuth(): oidc.ClientAuth {
    const secret = this.settings.clientSecret;
    return secret === undefined ? oidc.None() : oidc.ClientSecretPost(secret);
  }

  /** An openid-client failure as the code the callback page shows; the provider being down is not the user's fault. */
  private failure(err: unknown): BridgeError {
    if (err instanceof BridgeError) return err;
    if (unreachable(err)) {
      this.log.warn({ reason: reasonOf(err) }, 'oidc: the identity provider could not be reached');
      return new BridgeError('oidc_unavailable', undefined, { cause: err });
    }
    if (err instanceof oidc.AuthorizationResponseError)
      return new BridgeError('oidc_denied', `The identity provider answered: ${safeCode(err.error)}.`, {
        cause: err,
      });
    this.log.warn({ reason: reasonOf(err) }, 'oidc: the provider’s answer failed validation');
    return new BridgeError(
      'oidc_token_invalid',
      `The identity provider's answer failed validation: ${describe(err)}`,
      {
        cause: err,
      },
    );
  }
}

/** The issuer the provider's metadata names, when discovery refused it only for differing from `configured` by a trailing slash. */
function issuerButForSlash(err: unknown, configured: URL): URL | undefined {
  if (!(err instanceof oidc.ClientError) || err.code !== 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED')
    return undefined;
  const cause = err.cause as { attribute?: unknown; body?: { issuer?: unknown } } | undefined;
  const issuer = cause?.body?.issuer;
  if (cause?.attribute !== 'issuer' || typeof issuer !== 'string') return undefined;
  const bare = (u: string) => u.replace(/\/+$/, '');
  return bare(issuer) === bare(configured.href) && issuer !== configured.href ? new URL(issuer) : undefined;
}

function unreachable(err: unknown): boolean {
  const e = err as { name?: string; message?: string; code?: string; cause?: { status?: number } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return true;
  if (err instanceof TypeError && /fetch failed/i.test(e.message ?? '')) return true;
  // A 5xx from the token or keys endpoint: the provider is down, not the user refused.
  if (err instanceof oidc.ClientError && e.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM')
    return (e.cause?.status ?? 0) >= 500;
  return false;
}

/** The failure's kind, for the page and the log: openid-client's messages name the check, never a token's content. */
function describe(err: unknown): string {
  if (err instanceof oidc.ResponseBodyError)
    return `the token endpoint refused the code (${safeCode(err.error)}).`;
  if (err instanceof oidc.ClientError) return `${err.message}${err.code ? ` (${err.code})` : ''}.`;
  return 'unexpected answer.';
}

function reasonOf(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string };
  return [e.name, e.code, describe(err)].filter(Boolean).join(' ');
}

/** An OAuth error code as the provider sent it, if it looks like one; anything else is not echoed. */
function safeCode(code: unknown): string {
  return typeof code === 'string' && /^[\w.-]{1,64}$/.test(code) ? code : 'an error';
}
