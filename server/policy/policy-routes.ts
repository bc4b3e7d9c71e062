import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import { BridgeError } from '../errors';
import { principalOf } from '../http/access';
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

/** How much of a dry run's rule set its access-log entry keeps (200 rules could be far more). */
const ACCESS_LOG_RULES_MAX = 4096;

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
      const days = dryRunDays(b.days);
      const result = await dryRun(d.store, rules, days, d.now());
      // Its items are everyone's tool calls (who, what command, which path): an admin read of other
      // users' records like a search, so it leaves the same trace in the access log (docs/audit.md).
      const me = principalOf(req).user;
      const ruleSet = JSON.stringify(b.rules);
      await d.store.appendAccessLog({
        id: `acc_${randomUUID()}`,
        at: d.now().toISOString(),
        adminId: me.id,
        adminEmail: me.email,
        route: `${req.method} ${req.routeOptions.url ?? req.url}`,
        subjectUserId: null,
        query: {
          days: String(days),
          rules:
            ruleSet.length > ACCESS_LOG_RULES_MAX ? `${ruleSet.slice(0, ACCESS_LOG_RULES_MAX)}…` : ruleSet,
        },
      });
      return result;
    });
  };
}
