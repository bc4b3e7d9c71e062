import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import { policyRoutes } from './policy-routes';
import { ToolPolicy } from './tool-policy';

export interface PolicyCapability extends Capability {
  toolPolicy: ToolPolicy;
}

/**
 * Tool-call policy (docs/governance.md): the rules, their API, and their reload when another
 * replica writes them. The proxy asks it what applies to each request.
 */
export async function policyCapability(core: Core): Promise<PolicyCapability> {
  const { store, metrics, clock, log } = core;
  const now = datesOf(clock);
  const toolPolicy = new ToolPolicy(store, metrics, now, (rule, why) =>
    log.warn(
      { rule: rule.id, why },
      'tool policy: a stored argument pattern is not one RE2 accepts; the rule now matches every call of its tools until it is rewritten',
    ),
  );
  await toolPolicy.load();
  return {
    toolPolicy,
    routes: policyRoutes({ policy: toolPolicy, store, now }),
    reload: { tool_policy: () => toolPolicy.load() },
  };
}
