import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import { principalOf } from '../http/access';
import type { IdentityService } from '../identity/identity-service';
import { DeviceFlow, DeviceTokenError, formatUserCode } from './device-flow';
import { devicePage } from './device-page';
import { checkRedirectUri } from './redirect-uri';

/** RFC 8628 §3.4: the grant type a device polls with. */
export const DEVICE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';

/** Device names become key names: printable, bounded. */
const MAX_DEVICE_NAME = 100;

const LookupQuery = Type.Object(
  { userCode: Type.String({ minLength: 1, maxLength: 20 }) },
  { additionalProperties: false },
);
const AnswerBody = Type.Object(
  { userCode: Type.String({ minLength: 1, maxLength: 20 }), approve: Type.Boolean() },
  { additionalProperties: false },
);

export interface DeviceCapability extends Capability {
  flow: DeviceFlow;
  /** `GET /device`, served outside `/api` with the admin page's CSP. */
  page: FastifyPluginAsync;
}

function oauthError(reply: FastifyReply, error: string, description: string): FastifyReply {
  return reply.code(400).header('cache-control', 'no-store').send({ error, error_description: description });
}

/** A form (RFC 8628 clients send one) or JSON body, as string fields only. */
function fields(body: unknown): Record<string, string> {
  if (typeof body !== 'object' || body === null) return {};
  return Object.fromEntries(
    Object.entries(body as Record<string, unknown>).filter(
      (e): e is [string, string] => typeof e[1] === 'string',
    ),
  );
}

/**
 * Headless sign-in (RFC 8628 device authorization grant, docs/sso.md): `aibridge login` asks for a
 * code, a signed-in user approves it on `/device`, the device receives its own bridge key.
 */
export function deviceCapability(
  core: Core,
  identity: IdentityService,
  publicUrl: string | undefined,
): DeviceCapability {
  const flow = new DeviceFlow(
    core.store,
    identity,
    datesOf(core.clock),
    core.config.deviceKeyDays,
    core.config.deviceKeyMaxDays,
  );
  const base = (req: FastifyRequest): string =>
    (publicUrl ?? `${req.protocol}://${req.headers.host ?? 'localhost'}`).replace(/\/+$/, '');

  const routes: FastifyPluginAsync = async (app) => {
    app.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: 4096 },
      (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );

    // Public: a body is read before any key is checked, so the route's limit is the form's, whatever
    // the content type (JSON too).
    app.post(
      '/api/v1/auth/device/code',
      { config: { access: 'public' }, bodyLimit: 4096 },
      async (req, reply) => {
        const f = fields(req.body);
        // Control characters would reach key lists and the approval page; the name is only a label.
        const name = (f.device_name ?? '').replace(/[\p{Cc}\p{Cf}]/gu, '').trim();
        if (name.length > MAX_DEVICE_NAME)
          return oauthError(
            reply,
            'invalid_request',
            `device_name is longer than ${MAX_DEVICE_NAME} characters.`,
          );
        let redirectUri: string | undefined;
        if (f.redirect_uri !== undefined) {
          const checked = checkRedirectUri(f.redirect_uri);
          if (!checked.ok) return oauthError(reply, 'invalid_request', checked.message);
          redirectUri = checked.uri;
        }
        const a = await flow.start(name || 'device sign-in', req.ip, redirectUri);
        const uri = `${base(req)}/device`;
        const shown = formatUserCode(a.userCode);
        return reply.header('cache-control', 'no-store').send({
          device_code: a.deviceCode,
          user_code: shown,
          verification_uri: uri,
          verification_uri_complete: `${uri}?user_code=${shown}`,
          expires_in: a.expiresIn,
          interval: a.interval,
        });
      },
    );

    app.post(
      '/api/v1/auth/device/token',
      { config: { access: 'public' }, bodyLimit: 4096 },
      async (req, reply) => {
        const f = fields(req.body);
        if (f.grant_type !== DEVICE_GRANT_TYPE)
          return oauthError(reply, 'unsupported_grant_type', `grant_type must be ${DEVICE_GRANT_TYPE}.`);
        if (!f.device_code) return oauthError(reply, 'invalid_request', 'device_code is required.');
        try {
          const key = await flow.poll(f.device_code);
          const expiresIn = key.expiresAt
            ? Math.round((Date.parse(key.expiresAt) - core.clock.now()) / 1000)
            : undefined;
          return reply.header('cache-control', 'no-store').send({
            access_token: key.key,
            token_type: 'Bearer',
            expires_in: expiresIn,
            key_id: key.id,
            expires_at: key.expiresAt,
          });
        } catch (err) {
          if (err instanceof DeviceTokenError) return oauthError(reply, err.code, err.message);
          throw err;
        }
      },
    );

    // The device's own key, pushed forward while the device is in use (docs/sso.md#editors-the-same-grant-with-a-way-back).
    app.post('/api/v1/auth/device/renew', { config: { access: 'member' } }, async (req, reply) => {
      const key = await identity.renewKey(
        principalOf(req).key,
        core.config.deviceKeyDays,
        core.config.deviceKeyMaxDays,
      );
      return reply.header('cache-control', 'no-store').send({ key });
    });

    app.get<{ Querystring: Static<typeof LookupQuery> }>(
      '/api/v1/auth/device',
      { config: { access: 'member' }, schema: { querystring: LookupQuery } },
      async (req) => flow.lookup(req.query.userCode, principalOf(req).user, req.ip),
    );

    app.post<{ Body: Static<typeof AnswerBody> }>(
      '/api/v1/auth/device/approve',
      { config: { access: 'member' }, schema: { body: AnswerBody } },
      async (req) => {
        const { user, key } = principalOf(req);
        const device = await flow.answer(req.body.userCode, user, req.ip, req.body.approve, key);
        return { status: req.body.approve ? 'approved' : 'denied', device };
      },
    );
  };
  return { flow, routes, page: devicePage };
}
