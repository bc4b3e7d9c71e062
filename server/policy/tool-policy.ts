import type { ToolCallRecord } from '../../shared/interception';
import {
  blockedMessage,
  type ToolPolicyDoc,
  type ToolPolicyMark,
  type ToolPolicyRule,
} from '../../shared/tool-policy';
import type { InterceptionStart } from '../core/facts';
import type { Metrics } from '../metrics';
import type { CallPolicy } from '../proxy/exchange';
import type { Store } from '../store/types';
import { type CompiledRule, compileRules, decide, rulesFor, validateRules } from './tool-rules';

/** The rule set is one document, so a PUT replaces it whole and atomically on either store. */
const DOC_ID = 'rules';

/**
 * The organisation's tool-call rules (docs/governance.md), compiled once when written or loaded
 * (again when another replica writes them), and what applies to each request's caller.
 */
export class ToolPolicy {
  private doc: ToolPolicyDoc = { rules: [], updatedAt: null };
  private compiled: CompiledRule[] = [];

  constructor(
    private readonly store: Store,
    private readonly metrics: Pick<Metrics, 'toolPolicyDecisions'>,
    private readonly now: () => Date,
    private readonly onStale?: (rule: ToolPolicyRule, why: string) => void,
  ) {}

  async load(): Promise<void> {
    const doc = await this.store.getDoc<ToolPolicyDoc>('tool_policy', DOC_ID);
    this.use(doc ?? { rules: [], updatedAt: null });
  }

  private use(doc: ToolPolicyDoc): void {
    this.compiled = compileRules(doc.rules, this.onStale);
    this.doc = doc;
  }

  /**
   * A call an agent makes through the MCP gateway (no model answer to hold): the same rules, over
   * the name the client called (`<server>__<tool>`) and the name the server's tool has when an
   * agent is configured with that server directly (`mcp__<server>__<tool>`, Claude Code's), so a
   * rule written for either covers both ways in.
   */
  judgeGatewayCall(
    user: { id: string; email: string; team: string | null },
    names: readonly string[],
    input: unknown,
  ): ToolPolicyMark | undefined {
    if (this.compiled.length === 0) return undefined;
    const rules = rulesFor(this.compiled, { userId: user.id, email: user.email, team: user.team });
    let mark: ToolPolicyMark | undefined;
    for (const n of names) {
      const m = decide(rules, n, input);
      if (m?.action === 'deny') {
        mark = m;
        break;
      }
      mark ??= m;
    }
    if (mark) this.metrics.toolPolicyDecisions.inc({ action: mark.action });
    return mark;
  }

  get(): ToolPolicyDoc {
    return this.doc;
  }

  /** Validates and stores a new rule set (refusing the whole body on any bad rule), then uses it. */
  async put(rules: unknown): Promise<ToolPolicyDoc> {
    const doc: ToolPolicyDoc = { rules: validateRules(rules), updatedAt: this.now().toISOString() };
    await this.store.putDoc('tool_policy', DOC_ID, doc);
    this.use(doc);
    return doc;
  }

  /**
   * The rules for one request: the org's, the caller's team's and the caller's own. Undefined when
   * none apply, so such requests cost nothing; a `judge` only when a deny rule is among them, so
   * only then are tool calls held.
   */
  forRequest(start: InterceptionStart): CallPolicy | undefined {
    if (this.compiled.length === 0) return undefined;
    const { user } = start.principal;
    const rules = rulesFor(this.compiled, { userId: user.id, email: user.email, team: user.team });
    if (rules.length === 0) return undefined;
    const holds = rules.some((r) => r.rule.action === 'deny');
    return {
      ...(holds
        ? {
            judge: (call) => {
              const d = decide(rules, call.name, call.input, 'deny');
              return d && { rule: d.rule, message: blockedMessage(call.name, call.input, d.rule) };
            },
          }
        : {}),
      mark: (facts) => ({ ...facts, toolCalls: facts.toolCalls.map((c) => this.markCall(rules, c)) }),
    };
  }

  private markCall(rules: readonly CompiledRule[], call: ToolCallRecord): ToolCallRecord {
    // Calls the bridge ran itself (MCP injection) are not the agent's to govern here.
    if (call.injected) return call;
    const policy = decide(rules, call.name, call.input);
    if (!policy) return call;
    this.metrics.toolPolicyDecisions.inc({ action: policy.action });
    return { ...call, policy };
  }

  /** The stored rules, compiled, for a dry run of another set. */
  static compile(rules: unknown): CompiledRule[] {
    return compileRules(validateRules(rules));
  }
}
