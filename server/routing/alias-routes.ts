import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { ModelAliases } from './aliases';

const AliasParams = Type.Object({ alias: Type.String({ minLength: 1, maxLength: 100 }) });
const Team = Type.String({ minLength: 1, maxLength: 100 });
const AliasBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 200 }),
    team: Type.Optional(Type.Union([Team, Type.Null()])),
  },
  { additionalProperties: false },
);
const TeamQuery = Type.Object({ team: Type.Optional(Team) }, { additionalProperties: false });

/** The admin API of model aliases (docs/api.md): list, set, remove. */
export function aliasRoutes(aliases: ModelAliases): FastifyPluginAsync {
  return async (app) => {
    app.get('/api/v1/aliases', { config: { access: 'admin' } }, async () => ({ items: aliases.list() }));

    app.put<{ Params: Static<typeof AliasParams>; Body: Static<typeof AliasBody> }>(
      '/api/v1/aliases/:alias',
      { config: { access: 'admin' }, schema: { params: AliasParams, body: AliasBody } },
      async (req) => aliases.put(req.params.alias, req.body.model, req.body.team ?? null),
    );

    app.delete<{ Params: Static<typeof AliasParams>; Querystring: Static<typeof TeamQuery> }>(
      '/api/v1/aliases/:alias',
      { config: { access: 'admin' }, schema: { params: AliasParams, querystring: TeamQuery } },
      async (req) => aliases.delete(req.params.alias, req.query.team ?? null),
    );
  };
}
