import type { ToolCallRecord } from '../../shared/interception';
import { DRY_RUN_MAX_HITS, type ToolPolicyDryRun, toolCallSummary } from '../../shared/tool-policy';
import { BridgeError } from '../errors';
import type { Store } from '../store/types';
import { type CompiledRule, decideAny, mcpToolNames, rulesFor } from './tool-rules';

export const DRY_RUN_MAX_DAYS = 90;

/** `days` of a dry-run body: a whole number of days, 1 to DRY_RUN_MAX_DAYS, 7 when absent. */
export function dryRunDays(v: unknown): number {
  if (v === undefined) return 7;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > DRY_RUN_MAX_DAYS)
    throw new BridgeError(
      'invalid_tool_policy',
      `days: must be a whole number from 1 to ${DRY_RUN_MAX_DAYS}`,
    );
  return v;
}

/**
 * The names a recorded call is judged under: a client's call its own; a call of a tool the bridge
 * injected every name that tool goes by, as the bridge judges it before running it. None for an
 * injected call the bridge never came to run (its round ended first): no rule would have seen it.
 */
function judgedNames(call: ToolCallRecord): readonly string[] | undefined {
  if (!call.injected) return [call.name];
  const { server, execution } = call;
  if (!server || !execution) return undefined;
  if (execution.outcome === 'not_run' && call.policy?.action !== 'deny') return undefined;
  return mcpToolNames(server, execution.tool, call.name);
}

/**
 * Evaluates a rule set against the tool calls recorded in the last `days` (as recorded: inputs
 * redacted, and absent at capture `none`, where only rules without a pattern can match). Reads the
 * records as a stream, holding only the hits.
 */
export async function dryRun(
  store: Pick<Store, 'scanInterceptions'>,
  rules: readonly CompiledRule[],
  days: number,
  now: Date,
): Promise<ToolPolicyDryRun> {
  const since = new Date(now.getTime() - days * 86_400_000).toISOString();
  const result: ToolPolicyDryRun = {
    days,
    scanned: 0,
    calls: 0,
    denied: 0,
    flagged: 0,
    items: [],
    truncated: false,
  };
  const byUser = new Map<string, CompiledRule[]>();
  for await (const rec of store.scanInterceptions({ since })) {
    result.scanned++;
    if (rec.toolCalls.length === 0) continue;
    const key = `${rec.userId}\n${rec.team ?? ''}`;
    let mine = byUser.get(key);
    if (!mine) {
      mine = rulesFor(rules, { userId: rec.userId, email: rec.userEmail, team: rec.team });
      byUser.set(key, mine);
    }
    for (const call of rec.toolCalls) {
      const names = judgedNames(call);
      if (!names) continue;
      result.calls++;
      const d = decideAny(mine, names, call.input);
      if (!d) continue;
      if (d.action === 'deny') result.denied++;
      else result.flagged++;
      if (result.items.length >= DRY_RUN_MAX_HITS) {
        result.truncated = true;
        continue;
      }
      result.items.push({
        interceptionId: rec.id,
        at: rec.startedAt,
        userId: rec.userId,
        userEmail: rec.userEmail,
        tool: call.name,
        rule: d.rule,
        action: d.action,
        summary: call.input === null ? '' : toolCallSummary(call.input),
      });
    }
  }
  return result;
}
