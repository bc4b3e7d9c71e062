import { randomUUID } from 'node:crypto';
import type { User } from '../../shared/identity';
import type { Budget, BudgetAction, BudgetScope, BudgetStatus, Period } from '../../shared/spend';
import type { AlertService } from '../alerts/alert-service';
import { roundUsd } from '../core/rollup';
import { BridgeError, isBridgeError } from '../errors';
import type {
  BudgetCharge,
  BudgetClaim,
  BudgetLedger,
  NewInterception,
  ReserveOutcome,
  Store,
} from '../store/types';
import { periodEnd, periodStart } from './periods';

const DEFAULT_THRESHOLDS = [0.5, 0.8, 1.0];

export interface BudgetInput {
  scope: BudgetScope;
  subject: string;
  period: Period;
  limitUsd: number;
  action: BudgetAction;
  thresholds?: number[] | undefined;
}

/** A budget as this replica knows it (the document, and whom it names). */
interface Tracked {
  budget: Budget;
  /** Display name of the subject: the user's email, the team, or `org`. */
  label: string;
}

function usd(n: number): string {
  return `$${n.toFixed(n < 1 ? 4 : 2)}`;
}

/**
 * Budgets per user, team or the org, per day, week or month. Where each stands lives in the
 * store's ledgers (one per budget and period, started from the rollups), so replicas sharing a
 * database admit against the same numbers. A request reserves its estimated cost on every budget
 * that applies when it starts, atomically with the check, and the reservation is replaced by the
 * real cost when it ends: parallel requests, on any replica, cannot all slip under the limit.
 */
export class Budgets {
  private readonly tracked = new Map<string, Tracked>();
  /** Interceptions this replica reserved for and has not settled. */
  private readonly reservedFor = new Set<string>();
  /** Settlements still being written. */
  private readonly settling = new Set<Promise<void>>();

  constructor(
    private readonly store: Store,
    private readonly alerts: AlertService,
    private readonly now: () => Date = () => new Date(),
    private readonly onError: (err: unknown) => void = () => undefined,
    /** AIBRIDGE_AUDIT_FAILURE=open: admit without a budget check while the store is unreachable. */
    private readonly failOpen = false,
  ) {}

  async load(users: (id: string) => Promise<User | undefined>): Promise<void> {
    await this.track(await this.store.listDocs<Budget>('budget'), users);
  }

  private async track(budgets: Budget[], users: (id: string) => Promise<User | undefined>): Promise<void> {
    for (const b of budgets) {
      const user = b.scope === 'user' ? await users(b.subject) : undefined;
      this.tracked.set(b.id, { budget: b, label: user?.email ?? b.subject });
    }
  }

  /** Reads the stored budgets again (another replica changed them): deleted ones are dropped. */
  async reload(users: (id: string) => Promise<User | undefined>): Promise<void> {
    const budgets = await this.store.listDocs<Budget>('budget');
    const ids = new Set(budgets.map((b) => b.id));
    for (const id of this.tracked.keys()) if (!ids.has(id)) this.tracked.delete(id);
    await this.track(budgets, users);
  }

  private claim(b: Budget, now: Date): BudgetClaim {
    return {
      budgetId: b.id,
      periodStart: periodStart(b.period, now).toISOString(),
      limitUsd: b.limitUsd,
      block: b.action === 'block',
      thresholds: b.thresholds,
      scope: b.scope === 'user' ? { userId: b.subject } : b.scope === 'team' ? { team: b.subject } : {},
    };
  }

  private async statuses(list: Tracked[]): Promise<(BudgetStatus & { label: string })[]> {
    const now = this.now();
    const ledgers = await this.store.budgetLedgers(list.map((t) => this.claim(t.budget, now)));
    return list.map((t, i) => this.status(t, ledgers[i]!, now));
  }

  private status(t: Tracked, l: BudgetLedger, now: Date): BudgetStatus & { label: string } {
    return {
      ...t.budget,
      label: t.label,
      periodStart: l.periodStart,
      resetsAt: periodEnd(t.budget.period, now).toISOString(),
      spentUsd: roundUsd(l.spentUsd),
      reservedUsd: roundUsd(l.reservedUsd),
    };
  }

  async list(): Promise<(BudgetStatus & { label: string })[]> {
    return this.statuses([...this.tracked.values()]);
  }

  async get(id: string): Promise<BudgetStatus & { label: string }> {
    const t = this.tracked.get(id);
    if (!t) throw new BridgeError('budget_not_found', `No budget with id ${id}.`);
    return (await this.statuses([t]))[0]!;
  }

  /** The budgets that apply to a user: their own, their team's and the org's. */
  async forUser(user: Pick<User, 'id' | 'team'>): Promise<(BudgetStatus & { label: string })[]> {
    return this.statuses(this.applicable(user));
  }

  /** Creates the budget, or replaces the one with the same scope, subject and period. */
  async put(input: BudgetInput, label: string): Promise<BudgetStatus & { label: string }> {
    const existing = [...this.tracked.values()].find(
      (t) =>
        t.budget.scope === input.scope &&
        t.budget.subject === input.subject &&
        t.budget.period === input.period,
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
    this.tracked.set(budget.id, { budget, label });
    return this.get(budget.id);
  }

  async delete(id: string): Promise<BudgetStatus & { label: string }> {
    const s = await this.get(id);
    await this.store.deleteDoc('budget', id);
    this.tracked.delete(id);
    return s;
  }

  private applies(b: Budget, user: Pick<User, 'id' | 'team'>): boolean {
    return (
      b.scope === 'org' ||
      (b.scope === 'user' && b.subject === user.id) ||
      (b.scope === 'team' && b.subject === user.team)
    );
  }

  private applicable(user: Pick<User, 'id' | 'team'>): Tracked[] {
    return [...this.tracked.values()].filter((t) => this.applies(t.budget, user));
  }

  /**
   * Admits a request against every blocking budget that applies, reserving `estimateUsd` on each
   * budget that applies, or throws `budget_exceeded` naming the budget and when it resets. A budget
   * is spent once what ended plus what is reserved reaches the limit.
   */
  async reserve(interceptionId: string, user: Pick<User, 'id' | 'team'>, estimateUsd: number): Promise<void> {
    const list = this.applicable(user);
    if (list.length === 0) return;
    const now = this.now();
    let outcome: ReserveOutcome;
    try {
      outcome = await this.store.reserveBudgets(
        interceptionId,
        list.map((t) => this.claim(t.budget, now)),
        estimateUsd,
      );
    } catch (err) {
      if (this.failOpen && isBridgeError(err) && err.code === 'store_unavailable') {
        this.onError(err);
        return;
      }
      throw err;
    }
    if (outcome.ok) {
      this.reservedFor.add(interceptionId);
      return;
    }
    const l = outcome.refusedBy;
    const t = this.tracked.get(l.budgetId)!;
    const b = t.budget;
    const resetsAt = periodEnd(b.period, now).getTime();
    const seconds = Math.max(1, Math.ceil((resetsAt - now.getTime()) / 1000));
    throw new BridgeError(
      'budget_exceeded',
      `The ${b.period}ly budget of ${usd(b.limitUsd)} for ${b.scope === 'org' ? 'the organisation' : `${b.scope} ${t.label}`} (${b.id}) is spent (${usd(l.spentUsd)} used${l.reservedUsd > 0 ? `, ${usd(l.reservedUsd)} reserved by running requests` : ''}); it resets at ${new Date(resetsAt).toISOString()}.`,
      { headers: { 'retry-after': String(seconds) } },
    );
  }

  /**
   * Replaces the request's reservation with its real cost, and alerts on thresholds crossed (the
   * store marks a threshold alerted as it is crossed, so one replica alerts it, once). Runs in the
   * background; `settled()` waits for it.
   */
  settle(rec: NewInterception): void {
    const now = this.now();
    const user = { id: rec.userId, team: rec.team };
    const charges: BudgetCharge[] = [];
    if (rec.costUsd !== null && rec.costUsd > 0) {
      for (const t of this.applicable(user)) {
        const claim = this.claim(t.budget, now);
        if (rec.startedAt < claim.periodStart) continue;
        charges.push({ ...claim, costUsd: rec.costUsd });
      }
    }
    const held = this.reservedFor.delete(rec.id);
    if (!held && charges.length === 0) return;
    const p = this.store
      .settleBudgets(rec.id, charges)
      .then((settled) => {
        for (const [i, s] of settled.entries()) {
          if (s.crossed === null) continue;
          const t = this.tracked.get(charges[i]!.budgetId);
          if (t) this.alertCrossed(t, s.ledger.spentUsd, s.crossed, rec);
        }
      })
      .catch((err: unknown) => this.onError(err))
      .finally(() => this.settling.delete(p));
    this.settling.add(p);
  }

  /** Resolves once every settlement handed over so far is done. */
  async settled(): Promise<void> {
    await Promise.all([...this.settling]);
  }

  private alertCrossed(tracked: Tracked, spent: number, t: number, rec: NewInterception): void {
    const l = { budget: tracked.budget, label: tracked.label, spent };
    const who = l.budget.scope === 'org' ? 'the organisation' : `${l.budget.scope} ${l.label}`;
    this.alerts.raise({
      kind: 'budget',
      rule: 'budget_threshold',
      userId: l.budget.scope === 'user' ? l.budget.subject : null,
      userEmail: l.budget.scope === 'user' ? l.label : null,
      team: l.budget.scope === 'team' ? l.budget.subject : l.budget.scope === 'user' ? rec.team : null,
      observed: roundUsd(l.spent),
      baseline: l.budget.limitUsd,
      unit: 'usd',
      budgetId: l.budget.id,
      message: `${Math.round(t * 100)}% of the ${l.budget.period}ly budget for ${who} is used: ${usd(l.spent)} of ${usd(l.budget.limitUsd)}${l.budget.action === 'block' && t >= 1 ? '; new requests are refused until it resets' : ''}.`,
    });
  }
}
