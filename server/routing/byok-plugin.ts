import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import { ByokPolicy } from './byok';

const TeamParams = Type.Object({ team: Type.String({ minLength: 1, maxLength: 100 }) });
const ByokBody = Type.Object({ allowed: Type.Boolean() }, { additionalProperties: false });

export interface ByokCapability extends Capability {
  policy: ByokPolicy;
}

/**
 * Bring your own key (docs/routing.md#bring-your-own-key): which teams may send their members' own
 * provider credentials upstream, from the providers file and the admin API, reloaded on every
 * replica when one changes it.
 */
export async function byokCapability(core: Core): Promise<ByokCapability> {
  const { config, store, clock } = core;
  const policy = new ByokPolicy(store, config.byok.teams, datesOf(clock));
  await policy.load();
  const routes: FastifyPluginAsync = async (app) => {
    app.get<{ Params: Static<typeof TeamParams> }>(
      '/api/v1/teams/:team/byok',
      { config: { access: 'admin' }, schema: { params: TeamParams } },
      async (req) => policy.view(req.params.team),
    );
    app.put<{ Params: Static<typeof TeamParams>; Body: Static<typeof ByokBody> }>(
      '/api/v1/teams/:team/byok',
      { config: { access: 'admin' }, schema: { params: TeamParams, body: ByokBody } },
      async (req) => policy.put(req.params.team, req.body.allowed),
    );
  };
  return { policy, routes, reload: { team_byok: () => policy.load() } };
}
