import type {
  CacheBreak,
  GatewayToolCall,
  Interception,
  InterceptionStatus,
} from '../../shared/interception';
import type { BridgeEvent, HelloEvent, InterceptionRef } from '../../shared/protocol';
import { toolInputPreview } from '../../shared/protocol';
import type { Alert, Period } from '../../shared/spend';
import type { ToolPolicyMark } from '../../shared/tool-policy';
import { addUsage, emptyUsage, totalTokens, type Usage } from '../../shared/usage';
import type { UsageMe } from '../api/bridge-client';
import { Emitter } from '../emitter';
import type { ConnectionState } from '../live/machine';

/** Most interceptions the view keeps (newest first). */
export const MAX_ITEMS = 200;
/** From this fraction of a budget the status bar turns warning-coloured; from 1 error-coloured. */
export const WARN_FRACTION = 0.8;

export interface ModelSpend {
  model: string;
  requests: number;
  tokens: number;
  costUsd: number;
  unpricedRequests: number;
}

export interface BudgetView {
  id: string;
  label: string;
  period: Period;
  limitUsd: number;
  spentUsd: number;
  reservedUsd: number;
  periodStart: string;
  resetsAt: string;
}

export interface Spend {
  period: Period;
  since: string;
  until: string;
  requests: number;
  usage: Usage;
  costUsd: number;
  unpricedRequests: number;
  byModel: Map<string, ModelSpend>;
  budgets: BudgetView[];
}

export interface ToolCallItem {
  id: string;
  name: string;
  server: string | null;
  injected: boolean;
  inputPreview: string;
  at: string;
  /** A tool-policy rule matched it: `deny` (the agent never got it) or `audit` (flagged). */
  policy?: ToolPolicyMark;
}

export interface InterceptionItem {
  id: string;
  provider: string;
  model: string | null;
  client: string;
  sessionId: string | null;
  userEmail: string;
  /** `running` until it ends. */
  status: InterceptionStatus | 'running';
  startedAt: string;
  endedAt: string | null;
  durationMs: number | null;
  usage: Usage;
  costUsd: number | null;
  priceKnown: boolean;
  toolCalls: ToolCallItem[];
  /** This turn rewrote the session's prompt cache (docs/governance.md#prompt-cache-breaks). */
  cacheBreak: CacheBreak | null;
}

/** A tool call an agent made through the bridge's MCP gateway: no interception, its own row. */
export interface GatewayCallItem {
  id: string;
  /** `<server>__<tool>`, as the agent called it. */
  name: string;
  server: string;
  client: string;
  sessionId: string | null;
  inputPreview: string;
  at: string;
  outcome: GatewayToolCall['outcome'];
  durationMs: number;
}

/** A tool call a policy denied or flagged, for the notification. */
export interface PolicyDecision {
  interceptionId: string;
  tool: string;
  rule: string;
  action: ToolPolicyMark['action'];
  summary: string;
}

/** The current session broke its prompt cache: shown until that session's next turn ends. */
export interface CacheWarning extends CacheBreak {
  interceptionId: string;
  sessionId: string | null;
}

/** Who is signed in, as far as the views care. */
export type ModelUser = HelloEvent['user'];

export type ModelChange = 'connection' | 'spend' | 'interceptions' | 'alert' | 'policy' | 'cache' | 'reset';

/** How a request without a model is labelled everywhere in the extension. */
export const NO_MODEL = '(no model)';

/** How much of a budget is gone: spent and reserved over the limit (0 for a limit of 0). */
export function budgetFraction(b: Pick<BudgetView, 'spentUsd' | 'reservedUsd' | 'limitUsd'>): number {
  return b.limitUsd > 0 ? (b.spentUsd + b.reservedUsd) / b.limitUsd : 0;
}

function budgetLabel(b: UsageMe['budgets'][number]): string {
  return b.label ?? (b.scope === 'org' ? `org ${b.period}` : `${b.scope} ${b.subject} ${b.period}`);
}

/**
 * Everything the extension shows, in one place: the connection, the period's spend and the recent
 * interceptions. Fed by the HTTP seeds and the live events; the status bar, tree and webview only
 * render it. No vscode here.
 */
export class BridgeModel {
  connection: ConnectionState = { status: 'signedOut' };
  user: ModelUser | null = null;
  spend: Spend | null = null;
  /** Newest first. */
  items: InterceptionItem[] = [];
  lastAlert: Alert | null = null;
  /** The last tool call a policy denied or flagged (the container notifies on 'policy'). */
  lastPolicy: PolicyDecision | null = null;
  cacheWarning: CacheWarning | null = null;
  /** Newest first, at most MAX_ITEMS. */
  gatewayCalls: GatewayCallItem[] = [];
  /** Interceptions already added to `spend` since the last seed (an event can arrive twice across a reconnect). */
  private counted = new Set<string>();
  /** Ended events applied while a seed was being fetched: the seed may or may not include them. */
  private endedDuringSeed = 0;
  private seeding = false;
  private readonly changes = new Emitter<ModelChange>();
  readonly onDidChange = this.changes.event;

  setConnection(state: ConnectionState): void {
    this.connection = state;
    this.changes.fire('connection');
  }

  setUser(user: ModelUser | null): void {
    this.user = user && { id: user.id, email: user.email, role: user.role, team: user.team };
  }

  /** Call before fetching `usage/me`; `seedSpend` then says whether to fetch again shortly. */
  beginSeed(): void {
    this.seeding = true;
    this.endedDuringSeed = 0;
  }

  /**
   * Replaces the spend with the server's totals. Returns true when interceptions ended while the
   * seed was in flight, which the totals may or may not include: fetch again in a moment.
   */
  seedSpend(s: UsageMe): boolean {
    const byModel = new Map<string, ModelSpend>();
    for (const r of s.byModel) {
      byModel.set(r.key, {
        model: r.key,
        requests: r.requests,
        tokens: totalTokens(r.usage),
        costUsd: r.costUsd,
        unpricedRequests: r.unpricedRequests,
      });
    }
    this.spend = {
      period: s.period,
      since: s.since,
      until: s.until,
      requests: s.requests,
      usage: { ...s.usage },
      costUsd: s.costUsd,
      unpricedRequests: s.unpricedRequests,
      byModel,
      budgets: s.budgets.map((b) => ({
        id: b.id,
        label: budgetLabel(b),
        period: b.period,
        limitUsd: b.limitUsd,
        spentUsd: b.spentUsd,
        reservedUsd: b.reservedUsd,
        periodStart: b.periodStart,
        resetsAt: b.resetsAt,
      })),
    };
    this.counted = new Set();
    const ambiguous = this.seeding && this.endedDuringSeed > 0;
    this.seeding = false;
    this.changes.fire('spend');
    return ambiguous;
  }

  /** Merges the recent history (newest first); records are authoritative over what live events said. */
  seedHistory(records: Interception[]): void {
    const byId = new Map(this.items.map((i) => [i.id, i]));
    for (const r of records) {
      byId.set(r.id, {
        id: r.id,
        provider: r.provider,
        model: r.model,
        client: r.client,
        sessionId: r.sessionId,
        userEmail: r.userEmail,
        status: r.status,
        startedAt: r.startedAt,
        endedAt: r.endedAt,
        durationMs: r.durationMs,
        usage: { ...r.usage },
        costUsd: r.costUsd,
        priceKnown: r.priceKnown,
        toolCalls: r.toolCalls.map((c) => ({
          id: c.id,
          name: c.name,
          server: c.server,
          injected: c.injected,
          inputPreview: toolInputPreview(c.input),
          at: c.at,
          ...(c.policy ? { policy: c.policy } : {}),
        })),
        cacheBreak: r.cacheBreak ?? null,
      });
    }
    this.items = [...byId.values()]
      .sort((a, b) => b.startedAt.localeCompare(a.startedAt))
      .slice(0, MAX_ITEMS);
    this.changes.fire('interceptions');
  }

  /** Applies one live event. */
  apply(e: BridgeEvent): void {
    switch (e.type) {
      case 'hello':
        this.setUser(e.user);
        return;
      case 'interception.started': {
        const item = this.itemFor(e);
        item.startedAt = e.at;
        this.changes.fire('interceptions');
        return;
      }
      case 'interception.progress': {
        const item = this.itemFor(e);
        if (item.status === 'running') item.usage = { ...e.usage };
        this.changes.fire('interceptions');
        return;
      }
      case 'tool.call': {
        // Gateway calls belong to no interception: they are rows of their own.
        if (e.via === 'gateway') {
          this.addGatewayCalls([
            {
              id: e.callId,
              name: e.name,
              server: e.server,
              client: e.client,
              sessionId: e.sessionId,
              inputPreview: e.inputPreview,
              at: e.at,
              outcome: e.outcome,
              durationMs: e.durationMs,
            },
          ]);
          return;
        }
        const item = this.itemFor(e);
        // The same call twice is dropped; calls that share an id but not their arguments are not
        // the same call (older bridges recorded Gemini's calls, which have no id, by their name).
        if (!item.toolCalls.some((c) => c.id === e.callId && c.inputPreview === e.inputPreview)) {
          item.toolCalls.push({
            id: e.callId,
            name: e.name,
            server: e.server,
            injected: e.injected,
            inputPreview: e.inputPreview,
            at: e.at,
          });
        }
        this.changes.fire('interceptions');
        return;
      }
      case 'interception.ended': {
        const item = this.itemFor(e);
        // The session's next turn after a break has rebuilt its cache: the warning is over.
        if (
          this.cacheWarning &&
          this.cacheWarning.interceptionId !== e.interceptionId &&
          this.cacheWarning.sessionId === e.sessionId
        ) {
          this.cacheWarning = null;
          this.changes.fire('cache');
        }
        Object.assign(item, {
          status: e.status,
          endedAt: e.at,
          durationMs: e.durationMs,
          usage: { ...e.usage },
          costUsd: e.costUsd,
          priceKnown: e.priceKnown,
        });
        if (item.startedAt === '') item.startedAt = new Date(Date.parse(e.at) - e.durationMs).toISOString();
        // Spend first: the status bar must not wait on the tree.
        if (this.addToSpend(e, Date.parse(item.startedAt))) this.changes.fire('spend');
        this.changes.fire('interceptions');
        return;
      }
      case 'budget.alert': {
        this.lastAlert = e.alert;
        const b = this.spend?.budgets.find((x) => x.id === e.alert.budgetId);
        if (b) b.spentUsd = Math.max(b.spentUsd, e.alert.observed);
        this.changes.fire('alert');
        if (b) this.changes.fire('spend');
        return;
      }
      case 'alert':
        this.lastAlert = e.alert;
        this.changes.fire('alert');
        return;
      case 'tool.policy': {
        const item = this.itemFor(e);
        const mark = { rule: e.rule, action: e.action };
        const call = item.toolCalls.find((c) => c.id === e.callId);
        if (call) call.policy = mark;
        else
          item.toolCalls.push({
            id: e.callId,
            name: e.tool,
            server: null,
            injected: false,
            inputPreview: e.summary,
            at: e.at,
            policy: mark,
          });
        this.lastPolicy = {
          interceptionId: e.interceptionId,
          tool: e.tool,
          rule: e.rule,
          action: e.action,
          summary: e.summary,
        };
        this.changes.fire('interceptions');
        this.changes.fire('policy');
        return;
      }
      case 'cache.break': {
        const item = this.itemFor(e);
        const brk: CacheBreak = {
          cause: e.cause,
          excessUsd: e.excessUsd,
          tokens: e.tokens,
          previousInterceptionId: e.previousInterceptionId,
        };
        item.cacheBreak = brk;
        this.cacheWarning = { ...brk, interceptionId: e.interceptionId, sessionId: e.sessionId };
        this.changes.fire('interceptions');
        this.changes.fire('cache');
        return;
      }
      case 'mcp.warning':
        return;
    }
  }

  /** Merges gateway calls from `GET /api/v1/tool-calls?via=gateway` (after a reconnect) with live ones. */
  seedGatewayCalls(calls: readonly GatewayToolCall[]): void {
    this.addGatewayCalls(
      calls.map((c) => ({
        id: c.id,
        name: c.name,
        server: c.server,
        client: c.client,
        sessionId: c.sessionId,
        inputPreview: toolInputPreview(c.input),
        at: c.at,
        outcome: c.outcome,
        durationMs: c.durationMs,
      })),
    );
  }

  private addGatewayCalls(calls: readonly GatewayCallItem[]): void {
    const byId = new Map(this.gatewayCalls.map((c) => [c.id, c]));
    for (const c of calls) byId.set(c.id, c);
    this.gatewayCalls = [...byId.values()].sort((a, b) => b.at.localeCompare(a.at)).slice(0, MAX_ITEMS);
    this.changes.fire('interceptions');
  }

  /** Whether the period the spend covers is over at `now` (then it needs a fresh seed). */
  spendExpired(now: number): boolean {
    return this.spend !== null && now >= Date.parse(this.spend.until);
  }

  /** The budget closest to its limit, as a fraction (spent and reserved over limit); null without budgets. */
  nearestBudget(): { budget: BudgetView; fraction: number } | null {
    let best: { budget: BudgetView; fraction: number } | null = null;
    for (const b of this.spend?.budgets ?? []) {
      if (b.limitUsd <= 0) continue;
      const fraction = budgetFraction(b);
      if (!best || fraction > best.fraction) best = { budget: b, fraction };
    }
    return best;
  }

  /** Signed out: nothing of the last user's stays. */
  reset(): void {
    this.user = null;
    this.spend = null;
    this.items = [];
    this.lastAlert = null;
    this.lastPolicy = null;
    this.cacheWarning = null;
    this.gatewayCalls = [];
    this.counted = new Set();
    this.seeding = false;
    this.changes.fire('reset');
  }

  dispose(): void {
    this.changes.dispose();
  }

  /**
   * `startedAt`: when the request began. The bridge counts a request in the period it started in
   * (docs/spend.md), so a stream that ends after midnight UTC belongs to the day before.
   */
  private addToSpend(e: Extract<BridgeEvent, { type: 'interception.ended' }>, startedAt: number): boolean {
    if (this.seeding) this.endedDuringSeed++;
    const s = this.spend;
    if (!s || this.counted.has(e.interceptionId)) return false;
    if (this.user && e.userId !== this.user.id) return false;
    const at = Number.isFinite(startedAt) ? startedAt : Date.parse(e.at) - e.durationMs;
    if (at < Date.parse(s.since) || at >= Date.parse(s.until)) return false;
    this.counted.add(e.interceptionId);
    const tokens = totalTokens(e.usage);
    // Paid with the user's own key: a request and its tokens, but not the spend budgets count
    // (as /api/v1/usage/me reports it).
    const cost = e.billedTo === 'user' && e.costUsd !== null ? 0 : e.costUsd;
    s.requests++;
    s.usage = addUsage(s.usage, e.usage);
    if (cost !== null) s.costUsd += cost;
    else s.unpricedRequests++;
    const key = e.model ?? NO_MODEL;
    const m = s.byModel.get(key) ?? { model: key, requests: 0, tokens: 0, costUsd: 0, unpricedRequests: 0 };
    m.requests++;
    m.tokens += tokens;
    if (cost !== null) m.costUsd += cost;
    else m.unpricedRequests++;
    s.byModel.set(key, m);
    for (const b of s.budgets) {
      if (cost !== null && at >= Date.parse(b.periodStart) && at < Date.parse(b.resetsAt)) {
        b.spentUsd += cost;
      }
    }
    return true;
  }

  private itemFor(ref: InterceptionRef): InterceptionItem {
    let item = this.items.find((i) => i.id === ref.interceptionId);
    if (!item) {
      item = {
        id: ref.interceptionId,
        provider: ref.provider,
        model: ref.model,
        client: ref.client,
        sessionId: ref.sessionId,
        userEmail: ref.userEmail,
        status: 'running',
        startedAt: '',
        endedAt: null,
        durationMs: null,
        usage: emptyUsage(),
        costUsd: null,
        priceKnown: true,
        toolCalls: [],
        cacheBreak: null,
      };
      this.items.unshift(item);
      if (this.items.length > MAX_ITEMS) this.items.length = MAX_ITEMS;
    }
    return item;
  }
}
