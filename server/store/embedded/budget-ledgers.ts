import type { Interception } from '../../../shared/interception';
import type { Alert } from '../../../shared/spend';
import type { BucketQuery, UsageBucket } from '../../core/rollup';
import {
  alertedFrom,
  crossedThreshold,
  isSpent,
  leaseGrant,
  maxObserved,
  periodKey,
  spendIn,
} from '../budget-math';
import {
  type BudgetCharge,
  type BudgetClaim,
  type BudgetLedger,
  type BudgetSettlement,
  type InterceptionFilter,
  isSessionClaim,
  type LeaseOutcome,
  type LeaseSizing,
  RESERVATION_LIFETIME_MS,
  type ReserveOutcome,
} from '../types';

interface Ledger {
  budgetId: string;
  periodStart: string;
  spentUsd: number;
  alerted: number;
  /** By interception id: the amount and when it was reserved. */
  reservations: Map<string, { amountUsd: number; at: number }>;
}

/** Session-cap ledgers kept in memory at most. */
const MAX_SESSION_LEDGERS = 10_000;

export interface LedgerSources {
  usageBuckets(q: BucketQuery): Promise<UsageBucket[]>;
  listAlerts(q: { since?: string; limit: number }): Promise<Alert[]>;
  scanInterceptions(filter: InterceptionFilter): AsyncIterable<Interception>;
}

/**
 * What a session's records cost the organisation so far: where a session cap's ledger starts.
 * What users paid with their own credentials is theirs (docs/routing.md).
 */
async function sessionSpend(sources: LedgerSources, userId: string, sessionId: string): Promise<number> {
  let sum = 0;
  for await (const r of sources.scanInterceptions({ userId, sessionId }))
    if (r.billedTo !== 'user') sum += r.costUsd ?? 0;
  return sum;
}

/**
 * Budget ledgers of a single process, in memory: rebuilt from the rollups and alerts after a
 * restart (the embedded store has no other replicas to agree with). Every check-and-reserve runs
 * without an await in between, so it is atomic.
 */
export class MemoryBudgetLedgers {
  private readonly ledgers = new Map<string, Ledger>();
  private readonly starting = new Map<string, Promise<Ledger>>();
  /** Session caps' ledgers, oldest first. */
  private readonly sessionKeys = new Set<string>();

  constructor(
    private readonly sources: LedgerSources,
    private readonly now: () => number = Date.now,
  ) {}

  private ledger(claim: BudgetClaim): Promise<Ledger> {
    const key = periodKey(claim);
    const have = this.ledgers.get(key);
    if (have) return Promise.resolve(have);
    let p = this.starting.get(key);
    if (!p) {
      p = (async () => {
        const l: Ledger = {
          budgetId: claim.budgetId,
          periodStart: claim.periodStart,
          spentUsd: 0,
          alerted: 0,
          reservations: new Map(),
        };
        if (isSessionClaim(claim)) {
          l.spentUsd = await sessionSpend(this.sources, claim.scope.userId, claim.scope.sessionId);
        } else {
          const { userId, team } = claim.scope;
          const buckets = await this.sources.usageBuckets({ since: claim.periodStart, userId, team });
          const alerts = await this.sources.listAlerts({ since: claim.periodStart, limit: 100_000 });
          l.spentUsd = spendIn(buckets, claim);
          l.alerted = alertedFrom(claim, maxObserved(alerts, claim));
        }
        // Whoever started it first wins; a concurrent start returns the same object.
        if (!this.ledgers.has(key)) {
          this.ledgers.set(key, l);
          if (isSessionClaim(claim)) this.keepSession(key);
        }
        this.starting.delete(key);
        return this.ledgers.get(key)!;
      })();
      this.starting.set(key, p);
    }
    return p;
  }

  /**
   * Session caps make a ledger per session: past MAX_SESSION_LEDGERS the oldest idle ones are
   * dropped (a dropped session's ledger is rebuilt from its records if it comes back).
   */
  private keepSession(key: string): void {
    this.sessionKeys.add(key);
    if (this.sessionKeys.size <= MAX_SESSION_LEDGERS) return;
    for (const k of this.sessionKeys) {
      if (this.sessionKeys.size <= MAX_SESSION_LEDGERS) break;
      const l = this.ledgers.get(k);
      if (l && l.reservations.size > 0) continue;
      this.ledgers.delete(k);
      this.sessionKeys.delete(k);
    }
  }

  private view(l: Ledger): BudgetLedger {
    const cutoff = this.now() - RESERVATION_LIFETIME_MS;
    let reserved = 0;
    for (const [id, r] of l.reservations) {
      if (r.at < cutoff) l.reservations.delete(id);
      else reserved += r.amountUsd;
    }
    return {
      budgetId: l.budgetId,
      periodStart: l.periodStart,
      spentUsd: l.spentUsd,
      reservedUsd: reserved,
      alerted: l.alerted,
    };
  }

  async reserve(interceptionId: string, claims: BudgetClaim[], amountUsd: number): Promise<ReserveOutcome> {
    const ledgers = await Promise.all(claims.map((c) => this.ledger(c)));
    // From here on no await: check and reserve are one step.
    const views = ledgers.map((l) => this.view(l));
    for (const [i, c] of claims.entries())
      if (isSpent(c, views[i]!)) return { ok: false, refusedBy: views[i]! };
    const at = this.now();
    for (const l of ledgers) l.reservations.set(interceptionId, { amountUsd, at });
    return { ok: true, ledgers: ledgers.map((l) => this.view(l)) };
  }

  async lease(leaseId: string, claim: BudgetClaim, sizing: LeaseSizing): Promise<LeaseOutcome> {
    const l = await this.ledger(claim);
    // From here on no await: check and reserve are one step.
    const view = this.view(l);
    const granted = leaseGrant(claim, view, sizing);
    if (granted === null) return { ok: false, refusedBy: view };
    l.reservations.set(leaseId, { amountUsd: granted, at: this.now() });
    return { ok: true, grantedUsd: granted, ledger: this.view(l) };
  }

  async settle(interceptionId: string, charges: BudgetCharge[]): Promise<BudgetSettlement[]> {
    const ledgers = await Promise.all(charges.map((c) => this.ledger(c)));
    for (const l of this.ledgers.values()) l.reservations.delete(interceptionId);
    return charges.map((c, i) => {
      const l = ledgers[i]!;
      l.spentUsd += c.costUsd;
      const crossed = crossedThreshold(c, l.spentUsd, l.alerted);
      if (crossed !== null) l.alerted = crossed;
      return { ledger: this.view(l), crossed };
    });
  }

  async current(claims: BudgetClaim[]): Promise<BudgetLedger[]> {
    const ledgers = await Promise.all(claims.map((c) => this.ledger(c)));
    return ledgers.map((l) => this.view(l));
  }
}
