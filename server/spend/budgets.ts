import { randomUUID } from 'node:crypto';
import type { User } from '../../shared/identity';
import type { Budget, BudgetAction, BudgetScope, BudgetStatus, Period } from '../../shared/spend';
import type { AlertService } from '../alerts/alert-service';
import { BridgeError } from '../errors';
import type { NewInterception, Store } from '../store/types';
import { periodEnd, periodStart } from './periods';
import type { BucketQuery } from './rollup';

export const DEFAULT_THRESHOLDS = [0.5, 0.8, 1.0];

export interface BudgetInput {
  scope: BudgetScope;
  subject: string;
  period: Period;
  limitUsd: number;
  action: BudgetAction;
  thresholds?: number[] | undefined;
}

/** Where one budget stands in its current period. */
interface Ledger {
  budget: Budget;
  /** Display name of the subject: the user's email, the team, or `org`. */
  label: string;
  periodStart: number;
  resetsAt: number;
  spent: number;
  reserved: Map<string, number>;
  reservedSum: number;
  /** Thresholds already alerted this period. */
  alerted: Set<number>;
}

function usd(n: number): string {
  return `$${n.toFixed(n < 1 ? 4 : 2)}`;
}

/**
 * Budgets per user, team or the org, per day, week or month. Spend is kept in memory per budget:
 * read from the rollups when a budget is loaded or its period turns, then increased as each
 * interception ends. A blocking budget reserves each request's estimated cost when it starts and
 * replaces it with the real cost when it ends, so parallel requests cannot all slip under the limit.
 */
export class Budgets {
  private readonly ledgers = new Map<string, Ledger>();

  constructor(
    private readonly store: Store,
    private readonly alerts: AlertService,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async load(users: (id: string) => Promise<User | undefined>): Promise<void> {
    for (const b of await this.store.listDocs<Budget>('budget')) {
      const user = b.scope === 'user' ? await users(b.subject) : undefined;
      await this.track(b, user?.email ?? b.subject);
    }
  }

  private scopeQuery(b: Budget): Omit<BucketQuery, 'since'> {
    if (b.scope === 'user') return { userId: b.subject };
    if (b.scope === 'team') return { team: b.subject };
    return {};
  }

  private async spentSince(b: Budget, since: number): Promise<number> {
    const buckets = await this.store.usageBuckets({
      ...this.scopeQuery(b),
      since: new Date(since).toISOString(),
    });
    return buckets.reduce((s, x) => s + x.costUsd, 0);
  }

  private async track(b: Budget, label: string): Promise<Ledger> {
    const now = this.now();
    const start = periodStart(b.period, now).getTime();
    const previous = this.ledgers.get(b.id);
    const ledger: Ledger = {
      budget: b,
      label,
      periodStart: start,
      resetsAt: periodEnd(b.period, now).getTime(),
      spent: await this.spentSince(b, start),
      reserved: previous?.reserved ?? new Map(),
      reservedSum: previous?.reservedSum ?? 0,
      alerted: new Set(),
    };
    // Thresholds alerted earlier this period (before a restart) are not alerted again.
    const earlier = await this.store.listAlerts({ since: new Date(start).toISOString(), limit: 10_000 });
    for (const a of earlier) {
      if (a.budgetId !== b.id) continue;
      for (const t of b.thresholds) if (a.observed >= t * b.limitUsd) ledger.alerted.add(t);
    }
    this.ledgers.set(b.id, ledger);
    return ledger;
  }

  /** Starts a new period when the old one has ended. */
  private current(l: Ledger): Ledger {
    const now = this.now();
    if (now.getTime() >= l.resetsAt) {
      l.periodStart = periodStart(l.budget.period, now).getTime();
      l.resetsAt = periodEnd(l.budget.period, now).getTime();
      l.spent = 0;
      l.alerted.clear();
    }
    return l;
  }

  private status(l: Ledger): BudgetStatus & { label: string } {
    this.current(l);
    return {
      ...l.budget,
      label: l.label,
      periodStart: new Date(l.periodStart).toISOString(),
      resetsAt: new Date(l.resetsAt).toISOString(),
      spentUsd: Math.round(l.spent * 1e6) / 1e6,
      reservedUsd: Math.round(l.reservedSum * 1e6) / 1e6,
    };
  }

  list(): (BudgetStatus & { label: string })[] {
    return [...this.ledgers.values()].map((l) => this.status(l));
  }

  get(id: string): BudgetStatus & { label: string } {
    const l = this.ledgers.get(id);
    if (!l) throw new BridgeError('budget_not_found', `No budget with id ${id}.`);
    return this.status(l);
  }

  /** The budgets that apply to a user: their own, their team's and the org's. */
  forUser(user: Pick<User, 'id' | 'team'>): (BudgetStatus & { label: string })[] {
    return [...this.ledgers.values()].filter((l) => this.applies(l.budget, user)).map((l) => this.status(l));
  }

  /** Creates the budget, or replaces the one with the same scope, subject and period. */
  async put(input: BudgetInput, label: string): Promise<BudgetStatus & { label: string }> {
    const existing = [...this.ledgers.values()].find(
      (l) =>
        l.budget.scope === input.scope &&
        l.budget.subject === input.subject &&
        l.budget.period === input.period,
    )?.budget;
    const at = this.now().toISOString();
    const thresholds = [...new Set(input.thresholds ?? DEFAULT_THRESHOLDS)].sort((a, b) => a - b);
    const budget: Budget = {
      id: existing?.id ?? `bud_${randomUUID()}`,
      scope: input.scope,
      subject: input.subject,
      period: input.period,
      limitUsd: input.limitUsd,
      action: input.action,
      thresholds,
      createdAt: existing?.createdAt ?? at,
      updatedAt: at,
    };
    await this.store.putDoc('budget', budget.id, budget);
    return this.status(await this.track(budget, label));
  }

  async delete(id: string): Promise<BudgetStatus & { label: string }> {
    const s = this.get(id);
    await this.store.deleteDoc('budget', id);
    this.ledgers.delete(id);
    return s;
  }

  private applies(b: Budget, user: Pick<User, 'id' | 'team'>): boolean {
    return (
      b.scope === 'org' ||
      (b.scope === 'user' && b.subject === user.id) ||
      (b.scope === 'team' && b.subject === user.team)
    );
  }

  /**
   * Admits a request against every blocking budget that applies, reserving `estimateUsd` on each,
   * or throws `budget_exceeded` naming the budget and when it resets. A budget is spent once what
   * ended plus what is reserved reaches the limit.
   */
  reserve(interceptionId: string, user: Pick<User, 'id' | 'team'>, estimateUsd: number): void {
    const applicable = [...this.ledgers.values()]
      .filter((l) => this.applies(l.budget, user))
      .map((l) => this.current(l));
    for (const l of applicable) {
      if (l.budget.action !== 'block') continue;
      if (l.spent + l.reservedSum >= l.budget.limitUsd) {
        const resets = new Date(l.resetsAt);
        const seconds = Math.max(1, Math.ceil((l.resetsAt - this.now().getTime()) / 1000));
        throw new BridgeError(
          'budget_exceeded',
          `The ${l.budget.period}ly budget of ${usd(l.budget.limitUsd)} for ${l.budget.scope === 'org' ? 'the organisation' : `${l.budget.scope} ${l.label}`} (${l.budget.id}) is spent (${usd(l.spent)} used${l.reservedSum > 0 ? `, ${usd(l.reservedSum)} reserved by running requests` : ''}); it resets at ${resets.toISOString()}.`,
          { headers: { 'retry-after': String(seconds) } },
        );
      }
    }
    for (const l of applicable) {
      l.reserved.set(interceptionId, estimateUsd);
      l.reservedSum += estimateUsd;
    }
  }

  /** Replaces the request's reservation with its real cost, and alerts on thresholds crossed. */
  settle(rec: NewInterception): void {
    const user = { id: rec.userId, team: rec.team };
    for (const l of this.ledgers.values()) {
      const reserved = l.reserved.get(rec.id);
      if (reserved !== undefined) {
        l.reserved.delete(rec.id);
        l.reservedSum = Math.max(0, l.reservedSum - reserved);
      }
      if (!this.applies(l.budget, user)) continue;
      this.current(l);
      if (Date.parse(rec.startedAt) < l.periodStart) continue;
      if (rec.costUsd === null || rec.costUsd === 0) continue;
      l.spent += rec.costUsd;
      this.checkThresholds(l, rec);
    }
  }

  private checkThresholds(l: Ledger, rec: NewInterception): void {
    const crossed = l.budget.thresholds.filter((t) => !l.alerted.has(t) && l.spent >= t * l.budget.limitUsd);
    if (crossed.length === 0) return;
    for (const t of crossed) l.alerted.add(t);
    // One alert for the highest threshold crossed: a single expensive request may cross several.
    const t = crossed.at(-1)!;
    const who = l.budget.scope === 'org' ? 'the organisation' : `${l.budget.scope} ${l.label}`;
    this.alerts.raise({
      kind: 'budget',
      rule: 'budget_threshold',
      userId: l.budget.scope === 'user' ? l.budget.subject : null,
      userEmail: l.budget.scope === 'user' ? l.label : null,
      team: l.budget.scope === 'team' ? l.budget.subject : l.budget.scope === 'user' ? rec.team : null,
      observed: Math.round(l.spent * 1e6) / 1e6,
      baseline: l.budget.limitUsd,
      unit: 'usd',
      budgetId: l.budget.id,
      message: `${Math.round(t * 100)}% of the ${l.budget.period}ly budget for ${who} is used: ${usd(l.spent)} of ${usd(l.budget.limitUsd)}${l.budget.action === 'block' && t >= 1 ? '; new requests are refused until it resets' : ''}.`,
    });
  }
}
