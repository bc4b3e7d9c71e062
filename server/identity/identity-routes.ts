import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { ProviderInstanceInfo } from '../../shared/identity';
import { trimmedName } from '../core/team-name';
import { BridgeError } from '../errors';
import { principalOf } from '../http/access';
import { Instant } from '../http/instant';
import type { Store } from '../store/types';
import { type IdentityService, keyInfo } from './identity-service';
import { auditProvisionerUse, PROVISIONED_KEY_MAX_SECONDS } from './provisioners';

const NewUserBody = Type.Object(
  {
    email: Type.String({ format: 'email', maxLength: 320 }),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    team: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    role: Type.Optional(Type.Union([Type.Literal('admin'), Type.Literal('member')])),
  },
  { additionalProperties: false },
);

const UserPatchBody = Type.Object(
  {
    name: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 200 }), Type.Null()])),
    team: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 100 }), Type.Null()])),
    role: Type.Optional(Type.Union([Type.Literal('admin'), Type.Literal('member')])),
  },
  { additionalProperties: false, minProperties: 1 },
);

const NewKeyBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    /** A date alone is that day's start, UTC, as `aibridge keys create --expires-at` takes it. */
    expiresAt: Type.Optional(Instant),
    /** Lifetime in seconds instead of `expiresAt`; required from a provisioner credential. */
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: PROVISIONED_KEY_MAX_SECONDS })),
  },
  { additionalProperties: false },
);

const EmailParams = Type.Object({ email: Type.String({ minLength: 1, maxLength: 320 }) });
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

/**
 * Users and keys: `/api/v1/users`, `/api/v1/users/:email/keys`, `/api/v1/keys/:id`, `/api/v1/me`.
 * `providers`: the instances the bridge serves, named in `/api/v1/me` so a client (the extension)
 * sets up only the agents whose API the bridge speaks.
 */
export function identityRoutes(
  identity: IdentityService,
  store: Store,
  providers: readonly ProviderInstanceInfo[],
): FastifyPluginAsync {
  return async (app) => {
    app.get('/api/v1/me', { config: { access: 'member' } }, async (req) => {
      const { user, key } = principalOf(req);
      return { user, key: keyInfo(key), providers };
    });

    app.post<{ Body: Static<typeof NewUserBody> }>(
      '/api/v1/users',
      { config: { access: 'admin' }, schema: { body: NewUserBody } },
      async (req, reply) => {
        refuseBlankTeam(req.body.team);
        const user = await identity.createUser(req.body);
        return reply.code(201).send(user);
      },
    );

    app.get('/api/v1/users', { config: { access: 'admin' } }, async () => ({
      items: await store.listUsers(),
    }));

    app.patch<{ Params: Static<typeof EmailParams>; Body: Static<typeof UserPatchBody> }>(
      '/api/v1/users/:email',
      { config: { access: 'admin' }, schema: { params: EmailParams, body: UserPatchBody } },
      async (req) => {
        refuseBlankTeam(req.body.team);
        return identity.updateUser(req.params.email, req.body);
      },
    );

    app.get<{ Params: Static<typeof EmailParams> }>(
      '/api/v1/users/:email/keys',
      { config: { access: 'admin' }, schema: { params: EmailParams } },
      async (req) => {
        const user = await identity.findUser(req.params.email);
        return { items: (await store.listKeys(user.id)).map(keyInfo) };
      },
    );

    app.post<{ Params: Static<typeof EmailParams>; Body: Static<typeof NewKeyBody> | undefined }>(
      '/api/v1/users/:email/keys',
      {
        // Workspace templates mint with a provisioner credential (docs/sso.md): a TTL, nothing else.
        config: { access: 'admin', provisioner: true },
        schema: { params: EmailParams, body: Type.Optional(NewKeyBody) },
      },
      async (req, reply) => {
        const ttlSeconds = req.body?.ttlSeconds;
        if (req.provisioner && (ttlSeconds === undefined || req.body?.expiresAt !== undefined))
          throw new BridgeError(
            'invalid_request',
            `A provisioner must give ttlSeconds (at most ${PROVISIONED_KEY_MAX_SECONDS}) and no expiresAt.`,
          );
        if (ttlSeconds !== undefined && req.body?.expiresAt !== undefined)
          throw new BridgeError('invalid_request', 'Give expiresAt or ttlSeconds, not both.');
        const user = await identity.findUser(req.params.email);
        const now = identity.now();
        const expiresAt =
          ttlSeconds !== undefined
            ? new Date(now.getTime() + ttlSeconds * 1000).toISOString()
            : req.body?.expiresAt;
        if (expiresAt && Date.parse(expiresAt) <= Date.now()) {
          throw new BridgeError('invalid_request', 'expiresAt must be in the future.');
        }
        const created = await identity.issueKey(user, { name: req.body?.name, expiresAt });
        await auditProvisionerUse(store, req, now, user.id, {
          keyId: created.id,
          ttlSeconds: String(ttlSeconds),
        });
        return reply.code(201).send(created);
      },
    );

    app.delete<{ Params: Static<typeof IdParams> }>(
      '/api/v1/keys/:id',
      { config: { access: 'member' }, schema: { params: IdParams } },
      async (req) => {
        const { user } = principalOf(req);
        const key = await store.getKey(req.params.id);
        // Members may revoke their own keys; anyone else's is an admin's business, and a member
        // must not learn whether someone else's key id exists.
        if (!key || (user.role !== 'admin' && key.userId !== user.id)) {
          if (user.role !== 'admin')
            throw new BridgeError('forbidden', 'Members may revoke only their own keys.');
          throw new BridgeError('key_not_found', `No key ${req.params.id}.`);
        }
        return identity.revokeKey(req.params.id);
      },
    );
  };
}

/** `null` takes a user out of their team; a name of spaces alone is a mistake, not that. */
function refuseBlankTeam(team: string | null | undefined): void {
  if (typeof team === 'string' && trimmedName(team) === null)
    throw new BridgeError('invalid_request', 'A team name cannot be blank: send null to remove the team.');
}
