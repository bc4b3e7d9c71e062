import { type Static, Type } from '@sinclair/typebox';
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import * as oidc from 'openid-client';
import type { AuthConfig } from '../../shared/sso';
import { readCookie, sessionCookie } from '../admin/cookies';
import type { Sessions } from '../admin/sessions';
import type { OidcSettings } from '../config';
import { BridgeError, isBridgeError } from '../errors';
import { escapeHtml } from '../http/html';
import type { GroupMapping } from '../identity/group-mapping';
import type { IdentityService } from '../identity/identity-service';
import type { Store } from '../store/types';
import type { OidcRelyingParty } from './oidc-client';
import { FLOW_TTL_MS, type OidcFlows } from './oidc-flows';
import { type OidcPerson, personFrom, provision } from './oidc-identity';

export const OIDC_LOGIN_PATH = '/api/v1/auth/oidc/login';
export const OIDC_CALLBACK_PATH = '/api/v1/auth/oidc/callback';
/** Ties a flow to the browser that started it; Lax, as the provider's redirect back is a cross-site navigation. */
const FLOW_COOKIE = 'aibridge_oidc';
const DEFAULT_RETURN = '/admin';

const LoginQuery = Type.Object({ returnTo: Type.Optional(Type.String({ maxLength: 512 })) });

export interface OidcRouteDeps {
  /** Undefined: SSO is off, the routes answer `oidc_not_configured`. */
  settings: OidcSettings | undefined;
  rp: OidcRelyingParty | undefined;
  flows: OidcFlows;
  sessions: Sessions;
  identity: IdentityService;
  store: Store;
  groups: GroupMapping;
  /** True while SCIM sets team and role: the groups claim then gates sign-in (allow-list) but sets neither. */
  groupsFromScim: () => Promise<boolean>;
  keySignIn: boolean;
  publicUrl: string | undefined;
  now: () => Date;
  log: FastifyBaseLogger;
}

/**
 * Sign-in with the organisation's OpenID Provider (docs/sso.md): the login route sends the browser
 * to the provider, the callback provisions the user and opens the same admin-page session a key
 * sign-in does. Failures are a small page with the error's code, never a token's content.
 */
export function oidcRoutes(d: OidcRouteDeps): FastifyPluginAsync {
  const secure = (req: FastifyRequest): boolean =>
    req.protocol === 'https' || (d.publicUrl?.startsWith('https:') ?? false);

  return async (app) => {
    app.get('/api/v1/auth/config', { config: { access: 'public' } }, async (_req, reply) => {
      const body: AuthConfig = {
        sso: d.settings ? { displayName: d.settings.displayName, loginUrl: OIDC_LOGIN_PATH } : null,
        keySignIn: d.keySignIn,
      };
      return reply.header('cache-control', 'no-store').send(body);
    });

    app.get<{ Querystring: Static<typeof LoginQuery> }>(
      OIDC_LOGIN_PATH,
      { config: { access: 'public' }, schema: { querystring: LoginQuery } },
      async (req, reply) => {
        try {
          const rp = enabled(d);
          const returnTo = sameOriginPath(req.query.returnTo);
          const flow = {
            state: oidc.randomState(),
            nonce: oidc.randomNonce(),
            codeVerifier: oidc.randomPKCECodeVerifier(),
            returnTo,
          };
          // The provider first: when it is down, nothing is stored.
          const target = await rp.authorizationUrl(flow);
          const browser = await d.flows.begin(flow, req.ip);
          return reply
            .code(302)
            .header('cache-control', 'no-store')
            .header('set-cookie', flowCookie(browser, FLOW_TTL_MS / 1000, secure(req)))
            .header('location', target.href)
            .send();
        } catch (err) {
          return failurePage(reply, err, d.log);
        }
      },
    );

    app.get(OIDC_CALLBACK_PATH, { config: { access: 'public' } }, async (req, reply) => {
      // The flow cookie is single use whatever happens next.
      reply.header('set-cookie', flowCookie('', 0, secure(req)));
      try {
        const rp = enabled(d);
        const rawUrl = req.raw.url ?? '';
        const query = rawUrl.includes('?') ? rawUrl.slice(rawUrl.indexOf('?')) : '';
        const state = new URLSearchParams(query).get('state') ?? undefined;
        const flow = await d.flows.take(state, readCookie(req.headers, FLOW_COOKIE));
        const claims = await rp.finish(query, flow);
        const person = personFrom(claims, enabledSettings(d));
        // With SCIM pushing groups, its groups alone set team and role: Entra ID names groups by object
        // id in tokens and by name over SCIM, and the two would undo each other at every sign-in.
        const fromClaims: OidcPerson = (await d.groupsFromScim()) ? { ...person, groups: 'scim' } : person;
        // Paced as a key sign-in is, and before anything is written: provisioning, the key, the session.
        const known = await d.store.getUserByEmail(person.email);
        if (known) d.sessions.pace(known);
        const { user, created } = await provision(fromClaims, d.groups, d.identity, known);
        // A session is bound to a key (revoking it signs the browser out): a key of its own, living as long as the session.
        const key = await d.identity.issueKey(user, {
          name: 'admin page sign-in (SSO)',
          expiresAt: new Date(d.now().getTime() + d.sessions.ttlMs).toISOString(),
        });
        const signIn = await d.sessions.signIn(key.key, req.ip, { paced: known !== undefined });
        d.log.info({ userId: user.id, created }, 'oidc: signed in');
        return reply
          .code(302)
          .header('cache-control', 'no-store')
          .header('set-cookie', [
            flowCookie('', 0, secure(req)),
            sessionCookie(signIn.token, { maxAgeSeconds: d.sessions.ttlMs / 1000, secure: secure(req) }),
          ])
          .header('location', flow.returnTo)
          .send();
      } catch (err) {
        return failurePage(reply, err, d.log);
      }
    });
  };
}

function enabled(d: OidcRouteDeps): OidcRelyingParty {
  if (!d.rp) throw new BridgeError('oidc_not_configured');
  return d.rp;
}

function enabledSettings(d: OidcRouteDeps): OidcSettings {
  if (!d.settings) throw new BridgeError('oidc_not_configured');
  return d.settings;
}

/** `returnTo` when it is a path on this bridge; an absolute or protocol-relative URL would be an open redirect. */
export function sameOriginPath(raw: string | undefined): string {
  if (raw === undefined || raw === '') return DEFAULT_RETURN;
  const refused = new BridgeError(
    'invalid_request',
    'returnTo must be a path on this bridge, such as /admin.',
  );
  if (
    !raw.startsWith('/') ||
    raw.startsWith('//') ||
    raw.startsWith('/\\') ||
    [...raw].some((c) => c <= ' ' || c === '\\')
  )
    throw refused;
  const base = 'http://bridge.invalid';
  const u = new URL(raw, base);
  if (u.origin !== base) throw refused;
  const path = u.pathname + u.search + u.hash;
  // Judged as resolved, too: dot segments collapse `/.//evil.example` to `//evil.example`, which a
  // browser reads as another host.
  if (path.startsWith('//') || path.startsWith('/\\')) throw refused;
  return path;
}

function flowCookie(value: string, maxAgeSeconds: number, secure: boolean): string {
  const parts = [
    `${FLOW_COOKIE}=${value}`,
    'Path=/api/v1/auth/oidc',
    `Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}`,
    'HttpOnly',
    'SameSite=Lax',
  ];
  if (secure) parts.push('Secure');
  return parts.join('; ');
}

/** The page a failed sign-in lands on: why, with the stable code, and the way back. Nothing from the provider but an OAuth error code. */
function failurePage(reply: FastifyReply, err: unknown, log: FastifyBaseLogger): FastifyReply {
  const e = isBridgeError(err) ? err : new BridgeError('internal_error');
  if (!isBridgeError(err)) log.error({ err }, 'oidc: sign-in failed unexpectedly');
  else log.info({ code: e.code }, 'oidc: sign-in refused');
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign-in failed · AI Bridge</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main>
<h1>Sign-in failed</h1>
<p id="message">${escapeHtml(e.message)}</p>
<p>Error code: <code id="error-code" data-error-code="${e.code}">${e.code}</code></p>
<p><a href="${DEFAULT_RETURN}">Back to the sign-in page</a></p>
</main></body></html>
`;
  for (const [k, v] of Object.entries(e.headers)) reply.header(k, v);
  return reply
    .code(e.status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header(
      'content-security-policy',
      "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    )
    .header('referrer-policy', 'no-referrer')
    .send(html);
}
