import type { FastifyPluginAsync } from 'fastify';
import { BridgeError } from '../errors';
import { principalOf } from '../http/access';
import { KEY_NAME } from '../provider-config';
import type { KeyPools } from './key-pools';

/** Longest secret accepted (provider keys are well under this). */
const MAX_KEY_LENGTH = 4096;

function bodyOf(body: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new BridgeError('invalid_provider_key', 'body: must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b))
    if (!allowed.includes(k)) throw new BridgeError('invalid_provider_key', `${k}: unknown field`);
  return b;
}

/** A weight (a positive number) or a limit (a positive integer; null clears it where `nullable`). */
function positive(
  b: Record<string, unknown>,
  field: string,
  integer: boolean,
  nullable: boolean,
): number | null | undefined {
  const v = b[field];
  if (v === undefined || (nullable && v === null)) return v as null | undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v)))
    throw new BridgeError(
      'invalid_provider_key',
      `${field}: expected a positive ${integer ? 'integer' : 'number'}${nullable ? ' or null' : ''}`,
    );
  return v;
}

const defined = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

/**
 * The key-pool API (docs/api.md, docs/routing.md#key-pools): admins only. A secret goes in once and
 * never comes back out, in answers or in logs; each change leaves a log line naming the admin.
 */
export function keyRoutes(d: { pools: KeyPools; now: () => Date }): FastifyPluginAsync {
  return async (app) => {
    const admin = { config: { access: 'admin' as const } };
    type Params = { Params: { instance: string; name: string } };

    app.get<Params>('/api/v1/providers/:instance/keys', admin, async (req) => ({
      instance: req.params.instance,
      items: d.pools.list(req.params.instance),
    }));

    app.post<Params>('/api/v1/providers/:instance/keys', admin, async (req, reply) => {
      const b = bodyOf(req.body, ['name', 'key', 'weight', 'rpm', 'tpm']);
      if (typeof b.name !== 'string' || !KEY_NAME.test(b.name))
        throw new BridgeError(
          'invalid_provider_key',
          'name: expected a name matching ^[a-z0-9][a-z0-9_-]{0,31}$',
        );
      if (typeof b.key !== 'string' || b.key.trim() === '' || b.key.length > MAX_KEY_LENGTH)
        throw new BridgeError(
          'invalid_provider_key',
          `key: expected the secret, 1 to ${MAX_KEY_LENGTH} characters`,
        );
      const k = defined({
        name: b.name,
        key: b.key.trim(),
        weight: positive(b, 'weight', false, false) ?? undefined,
        rpm: positive(b, 'rpm', true, false) ?? undefined,
        tpm: positive(b, 'tpm', true, false) ?? undefined,
      });
      const view = await d.pools.add(req.params.instance, k, d.now());
      req.log.info(
        { provider: req.params.instance, key: k.name, by: principalOf(req).user.id },
        'provider key added',
      );
      return reply.code(201).header('cache-control', 'no-store').send(view);
    });

    app.patch<Params>('/api/v1/providers/:instance/keys/:name', admin, async (req) => {
      const b = bodyOf(req.body, ['weight', 'rpm', 'tpm', 'disabled']);
      if (b.disabled !== undefined && typeof b.disabled !== 'boolean')
        throw new BridgeError('invalid_provider_key', 'disabled: expected true or false');
      const p = defined({
        weight: positive(b, 'weight', false, false) ?? undefined,
        rpm: positive(b, 'rpm', true, true),
        tpm: positive(b, 'tpm', true, true),
        disabled: b.disabled as boolean | undefined,
      });
      const view = await d.pools.patch(req.params.instance, req.params.name, p, d.now());
      req.log.info(
        { provider: req.params.instance, key: req.params.name, change: p, by: principalOf(req).user.id },
        'provider key changed',
      );
      return view;
    });

    app.delete<Params>('/api/v1/providers/:instance/keys/:name', admin, async (req, reply) => {
      await d.pools.remove(req.params.instance, req.params.name);
      req.log.info(
        { provider: req.params.instance, key: req.params.name, by: principalOf(req).user.id },
        'provider key removed',
      );
      return reply.code(204).send();
    });
  };
}
