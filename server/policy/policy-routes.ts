import type { FastifyPluginAsync } from 'fastify';
import { BridgeError } from '../errors';
import type { Store } from '../store/types';
import { dryRun, dryRunDays } from './dry-run';
import { EXAMPLE_RULES } from './examples';
import { ToolPolicy } from './tool-policy';

function bodyObject(body: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new BridgeError('invalid_tool_policy', 'body: must be a JSON object with "rules"');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b))
    if (!allowed.includes(k)) throw new BridgeError('invalid_tool_policy', `${k}: unknown field`);
  return b;
}

/** The tool-policy API (docs/api.md, docs/governance.md): admins only. */
export function policyRoutes(d: { policy: ToolPolicy; store: Store; now: () => Date }): FastifyPluginAsync {
  return async (app) => {
    const admin = { config: { access: 'admin' as const } };

    app.get('/api/v1/tool-policy', admin, async () => d.policy.get());

    app.put('/api/v1/tool-policy', admin, async (req) => {
      const b = bodyObject(req.body, ['rules']);
      return d.policy.put(b.rules);
    });

    app.get('/api/v1/tool-policy/examples', admin, async () => ({ rules: EXAMPLE_RULES }));

    app.post('/api/v1/tool-policy/dry-run', admin, async (req) => {
      const b = bodyObject(req.body, ['rules', 'days']);
      const rules = ToolPolicy.compile(b.rules);
      return dryRun(d.store, rules, dryRunDays(b.days), d.now());
    });
  };
}
