import type { Alert } from '../../shared/spend';
import type { UsageBucket } from '../core/rollup';
import type { BudgetClaim, BudgetLedger, LeaseSizing } from './types';

/** What every store's ledgers agree on, so the stores differ only in where the numbers live. */

/** A new period's ledger starts from the spend the rollups already hold for the claim's scope. */
export function spendIn(buckets: UsageBucket[], claim: BudgetClaim): number {
  let sum = 0;
  for (const b of buckets) {
    if (b.hour < claim.periodStart) continue;
    if (claim.periodEnd !== undefined && b.hour >= claim.periodEnd) continue;
    if (claim.scope.userId !== undefined && b.userId !== claim.scope.userId) continue;
    if (claim.scope.team !== undefined && b.team !== claim.scope.team) continue;
    sum += b.costUsd;
  }
  return sum;
}

/** The highest threshold alerts raised earlier in the period reached (0: none), so a restart does not alert it again. */
export function alertedFrom(claim: BudgetClaim, maxObserved: number | null): number {
  if (maxObserved === null) return 0;
  let alerted = 0;
  for (const t of claim.thresholds) if (maxObserved >= t * claim.limitUsd && t > alerted) alerted = t;
  return alerted;
}

/** The highest observed value of the budget's alerts in the period, or null. */
export function maxObserved(alerts: Alert[], claim: BudgetClaim): number | null {
  let max: number | null = null;
  for (const a of alerts)
    if (
      a.budgetId === claim.budgetId &&
      a.at >= claim.periodStart &&
      (claim.periodEnd === undefined || a.at < claim.periodEnd)
    )
      max = Math.max(max ?? 0, a.observed);
  return max;
}

/** Whether a blocking budget admits no more requests. */
export function isSpent(claim: BudgetClaim, ledger: BudgetLedger): boolean {
  return claim.block && ledger.spentUsd + ledger.reservedUsd >= claim.limitUsd;
}

/**
 * What a lease on this ledger takes, or null when the budget is spent: a share of what is left,
 * never less than one request's estimate (so a budget with anything left admits one more request
 * per replica, as it would without leases) nor more than the cap.
 */
export function leaseGrant(claim: BudgetClaim, ledger: BudgetLedger, sizing: LeaseSizing): number | null {
  if (isSpent(claim, ledger)) return null;
  if (!claim.block) return sizing.minUsd;
  const left = claim.limitUsd - ledger.spentUsd - ledger.reservedUsd;
  return Math.max(sizing.minUsd, Math.min(sizing.maxUsd, sizing.share * left));
}

/** The highest threshold the spend has reached that was not alerted yet, or null. */
export function crossedThreshold(claim: BudgetClaim, spentUsd: number, alerted: number): number | null {
  let crossed: number | null = null;
  for (const t of claim.thresholds)
    if (t > alerted && spentUsd >= t * claim.limitUsd && (crossed === null || t > crossed)) crossed = t;
  return crossed;
}

export function periodKey(p: { budgetId: string; periodStart: string }): string {
  return `${p.budgetId}\u0000${p.periodStart}`;
}
