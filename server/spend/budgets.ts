import { createHash, randomUUID } from 'node:crypto';
import type { User } from '../../shared/identity';
import type {
  AnyBudget,
  AnyBudgetStatus,
  Budget,
  BudgetAction,
  BudgetScope,
  BudgetStatus,
  Period,
  SessionBudget,
} from '../../shared/spend';
import { periodly } from '../../shared/spend';
import type { AlertService } from '../alerts/alert-service';
import { roundUsd } from '../core/rollup';
import { BridgeError, isBridgeError } from '../errors';
import { periodKey } from '../store/budget-math';
import type {
  BudgetCharge,
  BudgetClaim,
  BudgetLedger,
  NewInterception,
  ReserveOutcome,
  Store,
} from '../store/types';
import { BudgetLeases, type LeaseTicket } from './budget-leases';
import { periodEnd, periodStart } from './periods';
import { settleWithRetries } from './settle-retry';

/** Longest `retry-after` a spent budget's refusal carries; a longer wait is only in `x-aibridge-budget-resets-at`. */
const BUDGET_RETRY_AFTER_MAX_S = 60;

const DEFAULT_THRESHOLDS = [0.5, 0.8, 1.0];

/** What applies when no budget exists: one empty list, not a new one a request. */
const NO_BUDGETS: readonly Tracked[] = Object.freeze([]);

/**
 * A session as an alert's text names it: the client chooses the id, and the text goes to admins'
 * channels (a webhook into chat), so only a plain id (a UUID, Codex's and Claude Code's: letters,
 * digits, `-` and `_`) is written
 * there; any other is in the alert's `sessionId` alone.
 */
function sessionLabel(id: string | null): string {
  // No dots or colons: chat apps make `evil.example` a link.
  return id !== null && /^[A-Za-z0-9_-]{1,80}$/.test(id) ? `session ${id}` : 'a session (see sessionId)';
}

export type BudgetInput =
  | {
      scope: BudgetScope;
      subject: string;
      period: Period;
      limitUsd: number;
      action: BudgetAction;
      thresholds?: number[] | undefined;
    }
  | {
      scope: 'session';
      subject: string;
      subjectKind?: 'user' | 'team' | undefined;
      period: 'session';
      limitUsd: number;
      action: BudgetAction;
      thresholds?: number[] | undefined;
    };

/** A budget as this replica knows it (the document, and whom it names). */
interface Tracked {
  budget: AnyBudget;
  /** Display name of the subject: the user's email, the team, or `org` (`every session` for an unnamed session cap). */
  label: string;
}

/** Who is asking, for the budgets that apply: the user, and the agent session when there is one. */
export interface Spender {
  id: string;
  team: string | null;
  sessionId?: string | null | undefined;
}

/**
 * A session cap's ledgers are one per session: each is keyed by the cap's id and a hash of the
 * user and session, and has no period (it starts at the epoch and runs for the session's life).
 */
const SESSION_EPOCH = new Date(0).toISOString();

function sessionLedgerId(budgetId: string, userId: string, sessionId: string): string {
  const h = createHash('sha256').update(`${userId}\u0000${sessionId}`).digest('hex').slice(0, 24);
  return `${budgetId}#${h}`;
}

function isSessionCap(b: AnyBudget): b is SessionBudget {
  return b.scope === 'session';
}

/**
 * Dollars for a refusal's text: cents from $1, four places below it, and below $0.0001 two
 * significant digits (a budget of $0.000001 read "$0.0000", which says it is nothing).
 */
export function usd(n: number): string {
  if (n > 0 && n < 0.0001)
    return `$${n.toFixed(Math.min(20, Math.ceil(-Math.log10(n)) + 1)).replace(/\.?0+$/, '')}`;
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
  /**
   * Where replicas share the store: leases of headroom requests are admitted against without a
   * database round trip each (budget-leases.ts). One process alone reserves per request.
   */
  private readonly leases: BudgetLeases<Tracked> | undefined;
  /** Requests admitted on leases, by interception id, until they settle. */
  private readonly tickets = new Map<string, LeaseTicket>();

  constructor(
    private readonly store: Store,
    private readonly alerts: AlertService,
    private readonly now: () => Date = () => new Date(),
    private readonly onError: (err: unknown) => void = () => undefined,
    /** AIBRIDGE_AUDIT_FAILURE=open: admit without a budget check while the store is unreachable. */
    private readonly failOpen = false,
  ) {
    this.leases = store.shared
      ? new BudgetLeases<Tracked>(
          store,
          (t, s, rec) => this.alertCrossed(t, s.ledger.spentUsd, s.crossed!, rec),
          onError,
        )
      : undefined;
  }

  async load(users: (id: string) => Promise<User | undefined>): Promise<void> {
    await this.track(await this.store.listDocs<AnyBudget>('budget'), users);
  }

  private async track(budgets: AnyBudget[], users: (id: string) => Promise<User | undefined>): Promise<void> {
    for (const b of budgets) {
      const user =
        b.scope === 'user' || (isSessionCap(b) && b.subjectKind === 'user')
          ? await users(b.subject)
          : undefined;
      this.tracked.set(b.id, { budget: b, label: user?.email ?? b.subject });
    }
  }

  /** Reads the stored budgets again (another replica changed them): deleted ones are dropped. */
  async reload(users: (id: string) => Promise<User | undefined>): Promise<void> {
    const budgets = await this.store.listDocs<AnyBudget>('budget');
    const ids = new Set(budgets.map((b) => b.id));
    for (const id of this.tracked.keys()) if (!ids.has(id)) this.tracked.delete(id);
    await this.track(budgets, users);
  }

  /** The ledger a request counts toward: the budget's current period, or a session cap's session. */
  private claim(b: AnyBudget, now: Date, who?: Spender): BudgetClaim {
    if (isSessionCap(b)) {
      const sessionId = who?.sessionId ?? '';
      const userId = who?.id ?? '';
      return {
        budgetId: sessionLedgerId(b.id, userId, sessionId),
        periodStart: SESSION_EPOCH,
        limitUsd: b.limitUsd,
        block: b.action === 'block',
        thresholds: b.thresholds,
        scope: { userId, sessionId },
      };
    }
    return {
      budgetId: b.id,
      periodStart: periodStart(b.period, now).toISOString(),
      periodEnd: periodEnd(b.period, now).toISOString(),
      limitUsd: b.limitUsd,
      block: b.action === 'block',
      thresholds: b.thresholds,
      scope: b.scope === 'user' ? { userId: b.subject } : b.scope === 'team' ? { team: b.subject } : {},
    };
  }

  private async statuses(list: Tracked[]): Promise<(AnyBudgetStatus & { label: string })[]> {
    const now = this.now();
    const periodic = list.filter((t) => !isSessionCap(t.budget));
    const ledgers = await this.store.budgetLedgers(periodic.map((t) => this.claim(t.budget, now)));
    const byId = new Map(periodic.map((t, i) => [t.budget.id, ledgers[i]!]));
    return list.map((t) => {
      const b = t.budget;
      if (isSessionCap(b))
        return {
          ...b,
          label: t.label,
          periodStart: b.createdAt,
          resetsAt: null,
          spentUsd: 0,
          reservedUsd: 0,
        };
      return this.status({ budget: b, label: t.label }, byId.get(b.id)!, now);
    });
  }

  private status(
    t: { budget: Budget; label: string },
    l: BudgetLedger,
    now: Date,
  ): BudgetStatus & { label: string } {
    return {
      ...t.budget,
      label: t.label,
      periodStart: l.periodStart,
      resetsAt: periodEnd(t.budget.period, now).toISOString(),
      spentUsd: roundUsd(l.spentUsd),
      reservedUsd: roundUsd(l.reservedUsd),
    };
  }

  async list(): Promise<(AnyBudgetStatus & { label: string })[]> {
    return this.statuses([...this.tracked.values()]);
  }

  async get(id: string): Promise<AnyBudgetStatus & { label: string }> {
    const t = this.tracked.get(id);
    if (!t) throw new BridgeError('budget_not_found', `No budget with id ${id}.`);
    return (await this.statuses([t]))[0]!;
  }

  /** The period budgets that apply to a user: their own, their team's and the org's (session caps are per session). */
  async forUser(user: Pick<User, 'id' | 'team'>): Promise<(BudgetStatus & { label: string })[]> {
    const list = this.applicable(user).filter((t) => !isSessionCap(t.budget));
    return (await this.statuses(list)) as (BudgetStatus & { label: string })[];
  }

  /** Creates the budget, or replaces the one with the same scope, subject and period. */
  async put(input: BudgetInput, label: string): Promise<AnyBudgetStatus & { label: string }> {
    const kind = (b: AnyBudget | BudgetInput): string | undefined =>
      b.scope === 'session' ? b.subjectKind : undefined;
    const existing = [...this.tracked.values()].find(
      (t) =>
        t.budget.scope === input.scope &&
        t.budget.subject === input.subject &&
        t.budget.period === input.period &&
        kind(t.budget) === kind(input),
    )?.budget;
    const at = this.now().toISOString();
    const thresholds = [...new Set(input.thresholds ?? DEFAULT_THRESHOLDS)].sort((a, b) => a - b);
    const common = {
      id: existing?.id ?? `bud_${randomUUID()}`,
      subject: input.subject,
      limitUsd: input.limitUsd,
      action: input.action,
      thresholds,
      createdAt: existing?.createdAt ?? at,
      updatedAt: at,
    };
    const budget: AnyBudget =
      input.scope === 'session'
        ? {
            ...common,
            scope: 'session',
            period: 'session',
            ...(input.subjectKind ? { subjectKind: input.subjectKind } : {}),
          }
        : { ...common, scope: input.scope, period: input.period };
    await this.store.putDoc('budget', budget.id, budget);
    this.tracked.set(budget.id, { budget, label });
    return this.get(budget.id);
  }

  async delete(id: string): Promise<AnyBudgetStatus & { label: string }> {
    const s = await this.get(id);
    await this.store.deleteDoc('budget', id);
    this.tracked.delete(id);
    return s;
  }

  private applies(b: AnyBudget, user: Spender): boolean {
    if (isSessionCap(b)) {
      if (!user.sessionId) return false;
      if (b.subjectKind === 'user') return b.subject === user.id;
      if (b.subjectKind === 'team') return b.subject === user.team;
      return true;
    }
    return (
      b.scope === 'org' ||
      (b.scope === 'user' && b.subject === user.id) ||
      (b.scope === 'team' && b.subject === user.team)
    );
  }

  private applicable(user: Spender): readonly Tracked[] {
    if (this.tracked.size === 0) return NO_BUDGETS;
    return [...this.tracked.values()].filter((t) => this.applies(t.budget, user));
  }

  /**
   * Admits a request against every blocking budget that applies, reserving `estimateUsd` on each
   * budget that applies, or throws `budget_exceeded` naming the budget and when it resets. A budget
   * is spent once what ended plus what is reserved reaches the limit. Undefined at once when no
   * budget applies to the user (most requests): no promise then.
   */
  reserve(
    interceptionId: string,
    user: Spender,
    estimateUsd: number | (() => number),
  ): Promise<void> | undefined {
    const list = this.applicable(user);
    if (list.length === 0) return undefined;
    // Given as a function, the estimate is made only when a budget applies: pricing the request
    // twice was some 2 µs of every request's admission, with no budget to reserve on.
    const estimate = typeof estimateUsd === 'function' ? estimateUsd() : estimateUsd;
    return this.reserveIn(list, interceptionId, user, estimate);
  }

  private async reserveIn(
    list: readonly Tracked[],
    interceptionId: string,
    user: Spender,
    estimateUsd: number,
  ): Promise<void> {
    const now = this.now();
    const claims = list.map((t) => this.claim(t.budget, now, user));
    let outcome: ReserveOutcome;
    try {
      const leased = await this.leases?.admit(
        claims.map((claim, i) => ({ claim, tag: list[i]! })),
        estimateUsd,
      );
      if (leased?.kind === 'admitted') {
        this.tickets.set(interceptionId, leased.ticket);
        return;
      }
      outcome =
        leased?.kind === 'refused'
          ? { ok: false, refusedBy: leased.ledger }
          : await this.store.reserveBudgets(interceptionId, claims, estimateUsd);
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
    const t = list[claims.findIndex((c) => c.budgetId === l.budgetId)]!;
    const b = t.budget;
    if (isSessionCap(b)) {
      throw new BridgeError(
        'budget_exceeded',
        `The session cap of ${usd(b.limitUsd)} (${b.id}) is reached for session ${user.sessionId}: ${usd(l.spentUsd)} used${l.reservedUsd > 0 ? `, ${usd(l.reservedUsd)} ${this.leases ? 'reserved by running requests and replicas' : 'reserved by running requests'}` : ''}. Start a new session to go on; other sessions are not affected.`,
      );
    }
    const resetsAt = periodEnd(b.period, now).getTime();
    const seconds = Math.max(1, Math.ceil((resetsAt - now.getTime()) / 1000));
    const resets = new Date(resetsAt).toISOString();
    throw new BridgeError(
      'budget_exceeded',
      `The ${periodly(b.period)} budget of ${usd(b.limitUsd)} for ${b.scope === 'org' ? 'the organisation' : `${b.scope} ${t.label}`} (${b.id}) is spent (${usd(l.spentUsd)} used${l.reservedUsd > 0 ? `, ${usd(l.reservedUsd)} ${this.leases ? 'reserved by running requests and replicas' : 'reserved by running requests'}` : ''}); it resets at ${new Date(resetsAt).toISOString()}.`,
      {
        // retry-after only when the wait is short: a client that honours it waits as told, and
        // Codex slept until midnight on a daily budget. The reset time is always in its own header.
        headers: {
          'x-aibridge-budget-resets-at': resets,
          ...(seconds <= BUDGET_RETRY_AFTER_MAX_S ? { 'retry-after': String(seconds) } : {}),
        },
      },
    );
  }

  /**
   * Replaces the request's reservation with its real cost, and alerts on thresholds crossed (the
   * store marks a threshold alerted as it is crossed, so one replica alerts it, once). Runs in the
   * background; `settled()` waits for it.
   */
  settle(rec: NewInterception): void {
    const user: Spender = { id: rec.userId, team: rec.team, sessionId: rec.sessionId };
    const charges: BudgetCharge[] = [];
    const chargedTo: Tracked[] = [];
    // A request the user paid with their own credential releases its reservation and charges
    // nothing: no budget (org, team, user or session) counts what the organisation did not pay.
    const chargedUsd = rec.costUsd !== null && rec.costUsd > 0 && rec.billedTo !== 'user' ? rec.costUsd : 0;
    // No budget at all (many deployments): nothing to find, and no date to read.
    if (chargedUsd > 0 && this.tracked.size > 0) {
      // The period the request started in, where it was admitted and its usage is rolled up: one
      // that ran past midnight (or a week's or month's end) is charged there, not to nobody.
      const started = new Date(rec.startedAt);
      for (const t of this.applicable(user)) {
        const claim = this.claim(t.budget, started, user);
        charges.push({ ...claim, costUsd: chargedUsd });
        chargedTo.push(t);
      }
    }
    const ticket = this.tickets.get(rec.id);
    if (ticket) {
      this.tickets.delete(rec.id);
      // Leased or not: a user-billed request charges its leases nothing either.
      this.leases!.finish(ticket, chargedUsd, rec);
      // What the leases do not cover (a budget created while the request ran) is charged at once.
      const leased = new Set(ticket.keys);
      const rest = charges.filter((c) => !leased.has(periodKey(c)));
      if (rest.length > 0)
        this.charge(
          rec,
          rest,
          chargedTo.filter((_, i) => !leased.has(periodKey(charges[i]!))),
        );
      return;
    }
    const held = this.reservedFor.delete(rec.id);
    if (!held && charges.length === 0) return;
    this.charge(rec, charges, chargedTo);
  }

  private charge(rec: NewInterception, charges: BudgetCharge[], chargedTo: Tracked[]): void {
    const p = settleWithRetries(this.store, rec.id, charges, this.onError)
      .then((settled) => {
        for (const [i, s] of settled.entries()) {
          if (s.crossed === null) continue;
          const t = chargedTo[i];
          if (t) this.alertCrossed(t, s.ledger.spentUsd, s.crossed, rec);
        }
      })
      .catch((err: unknown) => this.onError(err))
      .finally(() => this.settling.delete(p));
    this.settling.add(p);
  }

  /**
   * Resolves once every settlement handed over so far is done; leases are returned (each settles
   * once its running requests end) so what ended is in the store's ledgers.
   */
  async settled(): Promise<void> {
    await this.leases?.flush();
    await Promise.all([...this.settling]);
  }

  private alertCrossed(tracked: Tracked, spent: number, t: number, rec: NewInterception): void {
    const cap = tracked.budget;
    if (isSessionCap(cap)) {
      // About one user's session: the alert names them, and reaches them live.
      this.alerts.raise({
        kind: 'budget',
        rule: 'session_cap',
        userId: rec.userId,
        userEmail: rec.userEmail,
        team: rec.team,
        observed: roundUsd(spent),
        baseline: cap.limitUsd,
        unit: 'usd',
        budgetId: cap.id,
        ...(rec.sessionId !== null ? { sessionId: rec.sessionId } : {}),
        message: `${Math.round(t * 100)}% of the session cap is used by ${sessionLabel(rec.sessionId)} of ${rec.userEmail}: ${usd(spent)} of ${usd(cap.limitUsd)}${cap.action === 'block' && t >= 1 ? '; its new requests are refused' : ''}.`,
      });
      return;
    }
    // Crossed by a request that began in a period that has ended since (charged there): that
    // period is over, and an alert stamped now would read as this period's, hiding its own.
    if (
      periodStart(cap.period, new Date(rec.startedAt)).getTime() !==
      periodStart(cap.period, this.now()).getTime()
    )
      return;
    const l = { budget: cap, label: tracked.label, spent };
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
      message: `${Math.round(t * 100)}% of the ${periodly(l.budget.period)} budget for ${who} is used: ${usd(l.spent)} of ${usd(l.budget.limitUsd)}${l.budget.action === 'block' && t >= 1 ? '; new requests are refused until it resets' : ''}.`,
    });
  }
}
