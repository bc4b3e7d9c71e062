import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { BridgeError } from '../errors';
import { principalOf } from '../http/access';
import type { IdentityService } from '../identity/identity-service';
import type { Store } from '../store/types';

const InterceptionQuery = Type.Object(
  {
    user: Type.Optional(Type.String({ minLength: 1, maxLength: 320 })),
    provider: Type.Optional(Type.String({ minLength: 1, maxLength: 50 })),
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    client: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    since: Type.Optional(Type.String({ format: 'date-time' })),
    until: Type.Optional(Type.String({ format: 'date-time' })),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false },
);

function iso(v: string | undefined): string | undefined {
  return v === undefined ? undefined : new Date(v).toISOString();
}

/** `GET /api/v1/interceptions`: newest first; members see only their own. */
export function auditRoutes(identity: IdentityService, store: Store): FastifyPluginAsync {
  return async (app) => {
    app.get<{ Querystring: Static<typeof InterceptionQuery> }>(
      '/api/v1/interceptions',
      { config: { access: 'member' }, schema: { querystring: InterceptionQuery } },
      async (req) => {
        const { user } = principalOf(req);
        const q = req.query;
        let userId: string | undefined;
        if (q.user !== undefined) {
          if (user.role !== 'admin') {
            if (q.user !== user.id && q.user.toLowerCase() !== user.email) {
              throw new BridgeError('forbidden', 'Members may read only their own interceptions.');
            }
            userId = user.id;
          } else {
            userId = (await identity.findUser(q.user)).id;
          }
        } else if (user.role !== 'admin') {
          userId = user.id;
        }
        return store.listInterceptions(
          {
            userId,
            provider: q.provider,
            model: q.model,
            client: q.client,
            since: iso(q.since),
            until: iso(q.until),
          },
          q.limit,
          q.cursor,
        );
      },
    );
  };
}
