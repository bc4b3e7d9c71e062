import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { pageSecurityHeaders } from '../admin/assets';
import { BridgeError } from '../errors';
import { GATEWAY_PATH, gatewayOrigin } from '../gateway/gateway-routes';
import { principalOf } from '../http/access';
import { escapeHtml } from '../http/html';
import type { AuthThrottle } from '../identity/auth-throttle';
import { checkRegistration, redirectUriRegistered } from './client-metadata';
import { CONSENT_PAGE, CONSENT_SCRIPT } from './consent-page';
import { type McpGrants, OAuthError, S256_CHALLENGE_RE } from './grants';

export const AS_METADATA_PATH = '/.well-known/oauth-authorization-server';
export const REGISTER_PATH = '/oauth/register';
export const AUTHORIZE_PATH = '/oauth/authorize';
export const TOKEN_PATH = '/oauth/token';
export const CONSENT_PATH = '/oauth/consent';
/** Registration and token bodies are a few fields. */
const BODY_LIMIT = 16 * 1024;

const HandleParams = Type.Object({ handle: Type.String({ minLength: 1, maxLength: 64 }) });
const AnswerBody = Type.Object({ approve: Type.Boolean() }, { additionalProperties: false });

/** The authorization server's issuer: the bridge's public URL (or the request's origin), no trailing slash. */
function issuerOf(req: FastifyRequest, publicUrl: string | undefined): string {
  return gatewayOrigin(req, publicUrl).replace(/\/+$/, '');
}

/** RFC 6749's shape for a pace the caller is over: `429 temporarily_unavailable` with `retry-after`. */
function tooFast(reply: FastifyReply, retryAfterSeconds: string, description: string): FastifyReply {
  return reply
    .code(429)
    .header('retry-after', retryAfterSeconds)
    .header('cache-control', 'no-store')
    .send({ error: 'temporarily_unavailable', error_description: description });
}

function oauthError(reply: FastifyReply, err: OAuthError): FastifyReply {
  return (
    reply
      // invalid_client is a 400 too: public clients never authenticate with a header (RFC 6749 §5.2).
      .code(err.code === 'temporarily_unavailable' ? 503 : 400)
      .header('cache-control', 'no-store')
      .send({ error: err.code, error_description: err.message })
  );
}

/**
 * What the registration and token endpoints answer for an error thrown on their way: OAuth's own
 * shape for an OAuthError, `429 temporarily_unavailable` for a pace the caller is over (an address
 * registering clients too fast, a member refreshing past their pace of changes:
 * docs/mcp.md#oauth-for-mcp-clients); anything else is rethrown.
 */
function refused(reply: FastifyReply, err: unknown): FastifyReply {
  if (err instanceof OAuthError) return oauthError(reply, err);
  if (err instanceof BridgeError && err.code === 'rate_limited')
    return tooFast(reply, err.headers['retry-after'] ?? '60', err.message);
  throw err;
}

/** String fields of a form or JSON body. */
function fields(body: unknown): Record<string, string> {
  if (typeof body !== 'object' || body === null) return {};
  return Object.fromEntries(
    Object.entries(body as Record<string, unknown>).filter(
      (e): e is [string, string] => typeof e[1] === 'string',
    ),
  );
}

/** The query's parameters, each at most once (RFC 6749 §3.1: repeated parameters are an error). */
function singleParams(req: FastifyRequest): Record<string, string> | string {
  const raw = req.raw.url ?? '';
  const q = new URLSearchParams(raw.includes('?') ? raw.slice(raw.indexOf('?') + 1) : '');
  const out: Record<string, string> = {};
  for (const [k, v] of q) {
    if (k in out) return `${k} is repeated.`;
    out[k] = v;
  }
  return out;
}

/** An authorization request the bridge cannot send back to the client (unknown client or redirect URI): a page, never a redirect. */
function refusalPage(reply: FastifyReply, message: string): FastifyReply {
  return reply
    .code(400)
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header(
      'content-security-policy',
      "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    )
    .header('referrer-policy', 'no-referrer')
    .send(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorization refused · AI Bridge</title></head>
<body><main><h1>Authorization refused</h1><p id="message">${escapeHtml(message)}</p></main></body></html>
`);
}

function secured(reply: FastifyReply): FastifyReply {
  return pageSecurityHeaders(reply).header('cache-control', 'no-store');
}

/**
 * The bridge as the OAuth 2.1 authorization server of its MCP gateway (docs/mcp.md#oauth-for-mcp-clients), outside
 * `/api`: RFC 8414 metadata, RFC 7591 registration (public clients), the authorization endpoint
 * (PKCE S256 and an RFC 8707 `resource` naming `/mcp`, both required), the token endpoint
 * (authorization code, refresh with rotation) and the consent page.
 */
export function oauthPublicRoutes(
  grants: McpGrants,
  publicUrl: string | undefined,
  registrations: Pick<AuthThrottle, 'take'>,
): FastifyPluginAsync {
  return async (app) => {
    const config = { access: 'public' as const };
    app.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: BODY_LIMIT },
      (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );

    app.get(AS_METADATA_PATH, { config }, async (req, reply) => {
      const issuer = issuerOf(req, publicUrl);
      return reply.header('cache-control', 'max-age=300').send({
        issuer,
        authorization_endpoint: `${issuer}${AUTHORIZE_PATH}`,
        token_endpoint: `${issuer}${TOKEN_PATH}`,
        registration_endpoint: `${issuer}${REGISTER_PATH}`,
        response_types_supported: ['code'],
        response_modes_supported: ['query'],
        grant_types_supported: ['authorization_code', 'refresh_token'],
        token_endpoint_auth_methods_supported: ['none'],
        code_challenge_methods_supported: ['S256'],
        authorization_response_iss_parameter_supported: true,
        service_documentation: `${issuer}/admin`,
      });
    });

    app.post(REGISTER_PATH, { config, bodyLimit: BODY_LIMIT }, async (req, reply) => {
      try {
        // Every attempt counts, accepted or not: the pace is of registrations asked for.
        registrations.take(
          req.ip,
          (seconds) =>
            new BridgeError(
              'rate_limited',
              'Too many client registrations from this address; try again shortly.',
              { headers: { 'retry-after': String(seconds) } },
            ),
        );
        const checked = checkRegistration(req.body);
        if (!checked.ok)
          return reply
            .code(400)
            .header('cache-control', 'no-store')
            .send({ error: checked.error, error_description: checked.message });
        const client = await grants.register(checked.value.name, checked.value.redirectUris, req.ip);
        return reply
          .code(201)
          .header('cache-control', 'no-store')
          .send({
            client_id: client.id,
            client_id_issued_at: Math.floor(Date.parse(client.createdAt) / 1000),
            client_name: client.name,
            redirect_uris: client.redirectUris,
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none',
          });
      } catch (err) {
        return refused(reply, err);
      }
    });

    app.get(AUTHORIZE_PATH, { config }, async (req, reply) => {
      const q = singleParams(req);
      if (typeof q === 'string') return refusalPage(reply, q);
      const client = q.client_id ? await grants.client(q.client_id) : undefined;
      if (!client) return refusalPage(reply, 'Unknown client_id: the application must register first.');
      const redirectUri =
        q.redirect_uri ?? (client.redirectUris.length === 1 ? client.redirectUris[0] : undefined);
      if (!redirectUri || !redirectUriRegistered(redirectUri, client.redirectUris))
        return refusalPage(reply, 'redirect_uri is not one this application registered.');
      const issuer = issuerOf(req, publicUrl);
      // A refused request gets a page, not a redirect to the client's URI (RFC 6749 §4.1.2.1 would
      // send it back): registration is open, so any site can register itself as a client, and a
      // link to the bridge that redirected at once would make the bridge's origin bounce browsers
      // to it (an open redirector, RFC 9700 §4.11.2). The browser goes to the client's URI only
      // after a signed-in user has seen the consent page and answered.
      const back = (error: string, description: string): FastifyReply =>
        refusalPage(reply, `${description} (${error})`);
      if (q.response_type !== 'code')
        return back('unsupported_response_type', 'response_type must be "code".');
      if (!q.code_challenge) return back('invalid_request', 'PKCE is required: send code_challenge (S256).');
      if (q.code_challenge_method !== 'S256')
        return back('invalid_request', 'code_challenge_method must be "S256".');
      if (!S256_CHALLENGE_RE.test(q.code_challenge))
        return back('invalid_request', 'code_challenge is not a base64url SHA-256.');
      const resource = `${issuer}${GATEWAY_PATH}`;
      if (q.resource !== resource)
        return back('invalid_target', `resource must be this bridge's MCP gateway, ${resource}.`);
      try {
        const handle = await grants.begin(
          {
            clientId: client.id,
            redirectUri,
            codeChallenge: q.code_challenge,
            state: q.state ?? null,
            scope: q.scope ?? null,
            resource,
          },
          req.ip,
        );
        return reply
          .code(302)
          .header('cache-control', 'no-store')
          .header('location', `${CONSENT_PATH}?request=${handle}`)
          .send();
      } catch (err) {
        if (err instanceof OAuthError) return back(err.code, err.message);
        throw err;
      }
    });

    app.post(TOKEN_PATH, { config, bodyLimit: BODY_LIMIT }, async (req, reply) => {
      const f = fields(req.body);
      try {
        if (!f.client_id) throw new OAuthError('invalid_client', 'client_id is required.');
        if (!(await grants.client(f.client_id))) throw new OAuthError('invalid_client', 'Unknown client_id.');
        let tokens: Awaited<ReturnType<McpGrants['refresh']>>;
        if (f.grant_type === 'authorization_code') {
          if (!f.code) throw new OAuthError('invalid_request', 'code is required.');
          tokens = await grants.exchangeCode({
            code: f.code,
            clientId: f.client_id,
            redirectUri: f.redirect_uri,
            codeVerifier: f.code_verifier,
            resource: f.resource,
          });
        } else if (f.grant_type === 'refresh_token') {
          if (!f.refresh_token) throw new OAuthError('invalid_request', 'refresh_token is required.');
          tokens = await grants.refresh({
            refreshToken: f.refresh_token,
            clientId: f.client_id,
            resource: f.resource,
          });
        } else
          throw new OAuthError(
            'unsupported_grant_type',
            'grant_type must be "authorization_code" or "refresh_token".',
          );
        return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send(tokens);
      } catch (err) {
        return refused(reply, err);
      }
    });

    app.get(CONSENT_PATH, { config }, async (_req, reply) =>
      secured(reply).type('text/html; charset=utf-8').send(CONSENT_PAGE),
    );
    app.get(`${CONSENT_PATH}/consent.js`, { config }, async (_req, reply) =>
      secured(reply).type('text/javascript; charset=utf-8').send(CONSENT_SCRIPT),
    );
  };
}

/** What the consent page calls, behind the `/api` access hook (the session cookie, with its CSRF check). */
export function oauthApiRoutes(grants: McpGrants, publicUrl: string | undefined): FastifyPluginAsync {
  return async (app) => {
    const config = { access: 'member' as const };
    app.get<{ Params: Static<typeof HandleParams> }>(
      '/api/v1/oauth/requests/:handle',
      { config, schema: { params: HandleParams } },
      async (req, reply) =>
        reply.header('cache-control', 'no-store').send(await grants.view(req.params.handle)),
    );
    app.post<{ Params: Static<typeof HandleParams>; Body: Static<typeof AnswerBody> }>(
      '/api/v1/oauth/requests/:handle',
      { config, schema: { params: HandleParams, body: AnswerBody } },
      async (req, reply) => {
        const { user, key } = principalOf(req);
        const redirectTo = await grants.answer(
          req.params.handle,
          user,
          req.body.approve,
          issuerOf(req, publicUrl),
          key,
        );
        return reply.header('cache-control', 'no-store').send({ redirectTo });
      },
    );
  };
}
