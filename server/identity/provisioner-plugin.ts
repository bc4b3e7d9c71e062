import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import { principalOf } from '../http/access';
import type { KeyHasher } from './keys';
import { Provisioners } from './provisioners';

const NewProvisionerBody = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 200 }) },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

export interface ProvisionerCapability extends Capability {
  provisioners: Provisioners;
}

/** Provisioner credentials for workspace templates: `/api/v1/provisioners` (admin). */
export function provisionerCapability(core: Core, hasher: KeyHasher): ProvisionerCapability {
  const provisioners = new Provisioners(core.store, hasher, datesOf(core.clock));
  const routes: FastifyPluginAsync = async (app) => {
    app.post<{ Body: Static<typeof NewProvisionerBody> }>(
      '/api/v1/provisioners',
      { config: { access: 'admin' }, schema: { body: NewProvisionerBody } },
      async (req, reply) => {
        const created = await provisioners.create(req.body.name, principalOf(req).user.email);
        return reply.code(201).header('cache-control', 'no-store').send(created);
      },
    );
    app.get('/api/v1/provisioners', { config: { access: 'admin' } }, async () => ({
      items: await provisioners.list(),
    }));
    app.delete<{ Params: Static<typeof IdParams> }>(
      '/api/v1/provisioners/:id',
      { config: { access: 'admin' }, schema: { params: IdParams } },
      async (req, reply) => {
        await provisioners.delete(req.params.id);
        return reply.code(204).send();
      },
    );
  };
  return { provisioners, routes };
}
