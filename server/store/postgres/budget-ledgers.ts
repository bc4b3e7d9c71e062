import type pg from 'pg';
import type { Interception } from '../../../shared/interception';
import { alertedFrom, crossedThreshold, isSpent, leaseGrant, periodKey } from '../budget-math';
import {
  type BudgetCharge,
  type BudgetClaim,
  type BudgetLedger,
  type BudgetSettlement,
  isSessionClaim,
  type LeaseOutcome,
  type LeaseSizing,
  RESERVATION_LIFETIME_MS,
  type ReserveOutcome,
} from '../types';
import { pgText } from './sql-filter';

/**
 * Budget ledgers in the database, so every replica admits against the same numbers. Each
 * operation is one transaction that locks the ledger rows it touches (in a fixed order, so two
 * replicas never deadlock): a check and its reservation cannot interleave with another replica's.
 */

/** The claims once each, in lock order. */
function ordered<T extends BudgetClaim>(claims: T[]): T[] {
  const seen = new Map<string, T>();
  for (const c of claims) seen.set(periodKey(c), c);
  return [...seen.values()].sort((a, b) => (periodKey(a) < periodKey(b) ? -1 : 1));
}

/**
 * What a session's records cost the organisation. A record's JSON may hold `\u` escapes (NUL or
 * a lone surrogate a member put in a prompt or an id) that PostgreSQL's json functions refuse, so
 * the database sums the others and the few with an escape are read here.
 */
async function sessionSpent(c: pg.ClientBase, userId: string, sessionId: string): Promise<number> {
  const where = 'user_id = $1 AND session_id = $2';
  const params = [userId, pgText(sessionId)];
  const plain = await c.query<{ spent: number | null }>(
    // Nested CASE: the order of an AND's operands is not guaranteed, a CASE's branches are.
    `SELECT sum(CASE WHEN strpos(record, '\\u') > 0 THEN NULL
                     WHEN (record::json->>'billedTo') IS DISTINCT FROM 'user'
                     THEN (record::json->>'costUsd')::double precision END) AS spent
       FROM interceptions WHERE ${where}`,
    params,
  );
  let spent = plain.rows[0]?.spent ?? 0;
  const escaped = await c.query<{ record: string }>(
    `SELECT record FROM interceptions WHERE ${where} AND strpos(record, '\\u') > 0`,
    params,
  );
  for (const row of escaped.rows) {
    const rec = JSON.parse(row.record) as Pick<Interception, 'costUsd' | 'billedTo'>;
    if (rec.billedTo !== 'user') spent += rec.costUsd ?? 0;
  }
  return spent;
}

/** Starts the period's ledger from the rollups and earlier alerts if it is new, then locks it. */
async function lockLedger(c: pg.ClientBase, claim: BudgetClaim): Promise<{ spent: number; alerted: number }> {
  const get = (): Promise<pg.QueryResult<{ spent_usd: number; alerted: number }>> =>
    c.query(
      'SELECT spent_usd, alerted FROM budget_ledgers WHERE budget_id = $1 AND period_start = $2 FOR UPDATE',
      [claim.budgetId, claim.periodStart],
    );
  let row = (await get()).rows[0];
  if (!row && isSessionClaim(claim)) {
    // A session cap's ledger starts from what the session's records cost the organisation (alerts:
    // none yet); what users paid with their own credentials is theirs (docs/routing.md).
    const spent = await sessionSpent(c, claim.scope.userId, claim.scope.sessionId);
    await c.query(
      `INSERT INTO budget_ledgers (budget_id, period_start, spent_usd, alerted) VALUES ($1, $2, $3, 0)
       ON CONFLICT DO NOTHING`,
      [claim.budgetId, claim.periodStart, spent],
    );
    row = (await get()).rows[0]!;
  }
  if (!row) {
    const start = await c.query<{ spent: number | null; observed: number | null }>(
      `SELECT
         (SELECT sum(cost_usd) FROM usage_buckets
           WHERE hour >= $1::timestamptz AND ($5::timestamptz IS NULL OR hour < $5)
             AND ($2::text IS NULL OR user_id = $2) AND ($3::text IS NULL OR team = $3)) AS spent,
         (SELECT max((doc->>'observed')::double precision) FROM alerts
           WHERE at >= $1::timestamptz AND ($5::timestamptz IS NULL OR at < $5) AND doc->>'budgetId' = $4) AS observed`,
      [
        claim.periodStart,
        claim.scope.userId ?? null,
        claim.scope.team ?? null,
        claim.budgetId,
        claim.periodEnd ?? null,
      ],
    );
    const s = start.rows[0]!;
    await c.query(
      `INSERT INTO budget_ledgers (budget_id, period_start, spent_usd, alerted) VALUES ($1, $2, $3, $4)
       ON CONFLICT DO NOTHING`,
      [claim.budgetId, claim.periodStart, s.spent ?? 0, alertedFrom(claim, s.observed)],
    );
    row = (await get()).rows[0]!;
  }
  return { spent: row.spent_usd, alerted: row.alerted };
}

async function reservedFor(c: pg.ClientBase, claims: BudgetClaim[]): Promise<Map<string, number>> {
  const r = await c.query<{ budget_id: string; period_start: Date; reserved: number }>(
    `SELECT budget_id, period_start, sum(amount_usd) AS reserved FROM budget_reservations
      WHERE (budget_id, period_start) IN (SELECT * FROM unnest($1::text[], $2::timestamptz[]))
        AND at > now() - make_interval(secs => $3)
      GROUP BY budget_id, period_start`,
    [claims.map((x) => x.budgetId), claims.map((x) => x.periodStart), RESERVATION_LIFETIME_MS / 1000],
  );
  return new Map(
    r.rows.map((x) => [
      periodKey({ budgetId: x.budget_id, periodStart: x.period_start.toISOString() }),
      x.reserved,
    ]),
  );
}

function ledgerOf(claim: BudgetClaim, l: { spent: number; alerted: number }, reserved: number): BudgetLedger {
  return {
    budgetId: claim.budgetId,
    periodStart: claim.periodStart,
    spentUsd: l.spent,
    reservedUsd: reserved,
    alerted: l.alerted,
  };
}

export async function reserveBudgets(
  c: pg.ClientBase,
  interceptionId: string,
  claims: BudgetClaim[],
  amountUsd: number,
): Promise<ReserveOutcome> {
  const list = ordered(claims);
  const locked: { spent: number; alerted: number }[] = [];
  for (const claim of list) locked.push(await lockLedger(c, claim));
  const reserved = await reservedFor(c, list);
  const views = list.map((claim, i) => ledgerOf(claim, locked[i]!, reserved.get(periodKey(claim)) ?? 0));
  for (const [i, claim] of list.entries())
    if (isSpent(claim, views[i]!)) return { ok: false, refusedBy: views[i]! };
  await c.query(
    `INSERT INTO budget_reservations (interception_id, budget_id, period_start, amount_usd)
     SELECT $1, * FROM unnest($2::text[], $3::timestamptz[], $4::float8[])
     ON CONFLICT (interception_id, budget_id, period_start) DO UPDATE SET amount_usd = EXCLUDED.amount_usd`,
    [interceptionId, list.map((x) => x.budgetId), list.map((x) => x.periodStart), list.map(() => amountUsd)],
  );
  return { ok: true, ledgers: views.map((v) => ({ ...v, reservedUsd: v.reservedUsd + amountUsd })) };
}

/** Takes a lease's share of the ledger's headroom under the ledger's lock (types.ts `leaseBudget`). */
export async function leaseBudget(
  c: pg.ClientBase,
  leaseId: string,
  claim: BudgetClaim,
  sizing: LeaseSizing,
): Promise<LeaseOutcome> {
  const locked = await lockLedger(c, claim);
  const reserved = (await reservedFor(c, [claim])).get(periodKey(claim)) ?? 0;
  const view = ledgerOf(claim, locked, reserved);
  const granted = leaseGrant(claim, view, sizing);
  if (granted === null) return { ok: false, refusedBy: view };
  await c.query(
    `INSERT INTO budget_reservations (interception_id, budget_id, period_start, amount_usd) VALUES ($1, $2, $3, $4)
     ON CONFLICT (interception_id, budget_id, period_start) DO UPDATE SET amount_usd = EXCLUDED.amount_usd`,
    [leaseId, claim.budgetId, claim.periodStart, granted],
  );
  return { ok: true, grantedUsd: granted, ledger: { ...view, reservedUsd: reserved + granted } };
}

export async function settleBudgets(
  c: pg.ClientBase,
  interceptionId: string,
  charges: BudgetCharge[],
): Promise<BudgetSettlement[]> {
  await c.query('DELETE FROM budget_reservations WHERE interception_id = $1', [interceptionId]);
  const list = ordered(charges);
  const out = new Map<string, BudgetSettlement>();
  const locked: { spent: number; alerted: number }[] = [];
  for (const charge of list) locked.push(await lockLedger(c, charge));
  const reserved = await reservedFor(c, list);
  for (const [i, charge] of list.entries()) {
    const l = locked[i]!;
    const spent = l.spent + charge.costUsd;
    const crossed = crossedThreshold(charge, spent, l.alerted);
    const alerted = crossed ?? l.alerted;
    await c.query(
      'UPDATE budget_ledgers SET spent_usd = $3, alerted = $4 WHERE budget_id = $1 AND period_start = $2',
      [charge.budgetId, charge.periodStart, spent, alerted],
    );
    out.set(periodKey(charge), {
      ledger: ledgerOf(charge, { spent, alerted }, reserved.get(periodKey(charge)) ?? 0),
      crossed,
    });
  }
  return charges.map((ch) => out.get(periodKey(ch))!);
}

export async function budgetLedgers(c: pg.ClientBase, claims: BudgetClaim[]): Promise<BudgetLedger[]> {
  const list = ordered(claims);
  const byKey = new Map<string, BudgetLedger>();
  const locked: { spent: number; alerted: number }[] = [];
  for (const claim of list) locked.push(await lockLedger(c, claim));
  const reserved = await reservedFor(c, list);
  for (const [i, claim] of list.entries())
    byKey.set(periodKey(claim), ledgerOf(claim, locked[i]!, reserved.get(periodKey(claim)) ?? 0));
  return claims.map((claim) => byKey.get(periodKey(claim))!);
}

/** Reservations a crashed replica left behind, past their lifetime (they already count for nothing). */
export async function dropStaleReservations(c: pg.ClientBase | pg.Pool): Promise<void> {
  await c.query('DELETE FROM budget_reservations WHERE at < now() - make_interval(secs => $1)', [
    RESERVATION_LIFETIME_MS / 1000,
  ]);
}
