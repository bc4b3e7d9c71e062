import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { SessionInfo } from '../../shared/admin';
import { BridgeError } from '../errors';
import { principalOf } from '../http/access';
import { Instant } from '../http/instant';
import type { IdentityService } from '../identity/identity-service';
import { keyInfo } from '../identity/identity-service';
import { usageSeries } from '../spend/usage-series';
import type { Store } from '../store/types';
import { assertCsrf } from './browser-auth';
import { readCookies, SESSION_COOKIE, sessionCookie } from './cookies';
import type { Sessions } from './sessions';

const SIGN_IN_BODY_LIMIT = 4096;

const SignInBody = Type.Object(
  { key: Type.String({ minLength: 1, maxLength: 200 }) },
  { additionalProperties: false },
);

const SeriesQuery = Type.Object(
  {
    by: Type.Union([Type.Literal('team'), Type.Literal('model'), Type.Literal('user')], { default: 'team' }),
    step: Type.Union([Type.Literal('hour'), Type.Literal('day')], { default: 'day' }),
    since: Type.Optional(Instant),
    until: Type.Optional(Instant),
    user: Type.Optional(Type.String({ minLength: 1, maxLength: 320 })),
    team: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  },
  { additionalProperties: false },
);

/** Most points one series request may ask for (a year of days, or two months of hours). */
const MAX_POINTS = 1500;

export interface AdminRouteDeps {
  sessions: Sessions;
  identity: IdentityService;
  store: Store;
  /** AIBRIDGE_PUBLIC_URL: an https one makes the cookie Secure behind a TLS-terminating proxy. */
  publicUrl: string | undefined;
  /** AIBRIDGE_ADMIN_KEY_SIGNIN: false refuses keys here (SSO only); keys still work on every other route. */
  keySignIn: boolean;
}

/**
 * What the admin page needs beyond the API scripts use: sign-in and sign-out (a key exchanged for a
 * session cookie), a member's own keys, and spend over time for the charts.
 */
export function adminRoutes(d: AdminRouteDeps): FastifyPluginAsync {
  const secure = (req: FastifyRequest): boolean =>
    req.protocol === 'https' || (d.publicUrl?.startsWith('https:') ?? false);

  return async (app) => {
    app.post<{ Body: Static<typeof SignInBody> }>(
      '/api/v1/session',
      // Anyone can reach sign-in: its body (a key) is parsed before the key is checked, so it is small.
      { config: { access: 'public' }, schema: { body: SignInBody }, bodyLimit: SIGN_IN_BODY_LIMIT },
      async (req, reply) => {
        // Signing a victim's browser in to an attacker's account (login CSRF) is refused like any mutation.
        assertCsrf(req.headers, d.publicUrl);
        if (!d.keySignIn) throw new BridgeError('key_signin_disabled');
        const signIn = await d.sessions.signIn(req.body.key, req.ip);
        const body: SessionInfo = {
          user: signIn.principal.user,
          key: keyInfo(signIn.principal.key),
          expiresAt: signIn.expiresAt,
        };
        return reply
          .code(201)
          .header('cache-control', 'no-store')
          .header(
            'set-cookie',
            sessionCookie(signIn.token, {
              maxAgeSeconds: d.sessions.ttlMs / 1000,
              secure: secure(req),
            }),
          )
          .send(body);
      },
    );

    app.delete('/api/v1/session', { config: { access: 'public' } }, async (req, reply: FastifyReply) => {
      // Every session cookie sent ends: with one planted beside the browser's own, ending none
      // would leave the real session open behind a sign-out that said it was done.
      const tokens = readCookies(req.headers, SESSION_COOKIE);
      if (tokens.length > 0) {
        assertCsrf(req.headers, d.publicUrl);
        for (const token of tokens) await d.sessions.signOut(token);
      }
      return reply
        .code(204)
        .header('set-cookie', sessionCookie('', { maxAgeSeconds: 0, secure: secure(req) }))
        .send();
    });

    app.get('/api/v1/me/keys', { config: { access: 'member' } }, async (req) => {
      const { user } = principalOf(req);
      return { items: (await d.store.listKeys(user.id)).map(keyInfo) };
    });

    app.get<{ Querystring: Static<typeof SeriesQuery> }>(
      '/api/v1/usage/series',
      { config: { access: 'member' }, schema: { querystring: SeriesQuery } },
      async (req) => {
        const me = principalOf(req).user;
        const q = req.query;
        const step = q.step ?? 'day';
        const until = q.until ? new Date(q.until) : new Date();
        const since = q.since
          ? new Date(q.since)
          : new Date(until.getTime() - (step === 'day' ? 30 * 86_400_000 : 48 * 3_600_000));
        if (since >= until) throw new BridgeError('invalid_request', 'since must be before until.');
        const points = (until.getTime() - since.getTime()) / (step === 'day' ? 86_400_000 : 3_600_000);
        if (points > MAX_POINTS)
          throw new BridgeError('invalid_request', `At most ${MAX_POINTS} ${step}s per request.`);
        let userId: string | undefined;
        let team = q.team;
        if (me.role !== 'admin') {
          // Members chart only their own spend.
          if (q.user !== undefined && q.user !== me.id && q.user.toLowerCase() !== me.email)
            throw new BridgeError('forbidden', 'Members may read only their own usage.');
          if (team !== undefined)
            throw new BridgeError('forbidden', 'Members may read only their own usage.');
          userId = me.id;
          team = undefined;
        } else if (q.user !== undefined) userId = (await d.identity.findUser(q.user)).id;
        const buckets = await d.store.usageBuckets({
          since: since.toISOString(),
          until: until.toISOString(),
          userId,
          team,
        });
        return await usageSeries(buckets, q.by ?? 'team', step, since, until);
      },
    );
  };
}
