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
import {
  type CompiledRule,
  compileRules,
  decide,
  decideAny,
  mcpToolNames,
  rulesFor,
  validateRules,
} from './tool-rules';

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
   * A call the bridge runs on an MCP server itself (no model answer to hold): one an agent makes
   * through the MCP gateway, or one of the tools the bridge injected into a request
   * (server/mcp/injected-rounds.ts). The same rules, over every name the tool goes by
   * (`mcpToolNames` in ./tool-rules.ts), so a rule written for any of them covers every way in.
   */
  judgeGatewayCall(
    user: { id: string; email: string; team: string | null },
    names: readonly string[],
    input: unknown,
  ): ToolPolicyMark | undefined {
    if (this.compiled.length === 0) return undefined;
    const rules = rulesFor(this.compiled, { userId: user.id, email: user.email, team: user.team });
    const mark = decideAny(rules, names, input);
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
  forRequest(start: Pick<InterceptionStart, 'principal'>): CallPolicy | undefined {
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
    // Calls of the tools the bridge injected were judged, and marked, before it ran them
    // (server/mcp/injected-rounds.ts); those it never ran are no one's to govern.
    if (call.injected) return call;
    // A call of an MCP server's tool named apart from its server (a provider's MCP connector or
    // hosted `mcp` tool) is judged under every name the server's tools go by, as the gateway does.
    const names =
      call.server && !call.name.startsWith(`mcp__${call.server}__`)
        ? [call.name, ...mcpToolNames(call.server, call.name)]
        : [call.name];
    const policy = decideAny(rules, names, call.input);
    if (!policy) return call;
    this.metrics.toolPolicyDecisions.inc({ action: policy.action });
    return { ...call, policy };
  }

  /** The stored rules, compiled, for a dry run of another set. */
  static compile(rules: unknown): CompiledRule[] {
    return compileRules(validateRules(rules));
  }
}
