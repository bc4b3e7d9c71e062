import type { UsageGroupBy, UsageReport, UsageRow } from '../../shared/spend';
import { addUsage, emptyUsage, totalTokens } from '../../shared/usage';
import { roundUsd, type UsageBucket } from '../core/rollup';
import { eachInTurns } from '../core/turns';
import { csvLine } from '../http/csv';

function keyOf(b: UsageBucket, by: UsageGroupBy): string {
  switch (by) {
    case 'user':
      return b.userEmail;
    case 'team':
      return b.team ?? '(none)';
    case 'model':
      return b.model ?? '(none)';
    case 'client':
      return b.client;
    case 'day':
      return b.hour.slice(0, 10);
  }
}

function emptyRow(key: string): UsageRow {
  return {
    key,
    requests: 0,
    usage: emptyUsage(),
    costUsd: 0,
    unpricedRequests: 0,
    userBilledCostUsd: 0,
    userBilledRequests: 0,
  };
}

/** Adds one hourly bucket's counts to a running sum (a report row, or a user's engagement). */
export function addBucket(
  row: Pick<UsageRow, 'requests' | 'usage' | 'costUsd' | 'unpricedRequests'>,
  b: Pick<UsageBucket, 'requests' | 'usage' | 'costUsd' | 'unpricedRequests'>,
): void {
  row.requests += b.requests;
  row.usage = addUsage(row.usage, b.usage);
  row.costUsd += b.costUsd;
  row.unpricedRequests += b.unpricedRequests;
}

/** Sums hourly buckets into rows by one dimension, plus totals; rows by cost, then key. */
export async function usageReport(
  buckets: UsageBucket[],
  groupBy: UsageGroupBy,
  window: { since?: string | undefined; until?: string | undefined },
): Promise<UsageReport> {
  const rows = new Map<string, UsageRow>();
  const totals = emptyRow('');
  await eachInTurns(buckets, (b) => {
    const k = keyOf(b, groupBy);
    let row = rows.get(k);
    if (!row) {
      row = emptyRow(k);
      rows.set(k, row);
    }
    addBucket(row, b);
    addBucket(totals, b);
    addUserBilled(row, b);
    addUserBilled(totals, b);
  });
  const sorted = [...rows.values()].map((r) => ({
    ...r,
    costUsd: roundUsd(r.costUsd),
    userBilledCostUsd: roundUsd(r.userBilledCostUsd),
  }));
  if (groupBy === 'day') sorted.sort((a, b) => a.key.localeCompare(b.key));
  else sorted.sort((a, b) => b.costUsd - a.costUsd || a.key.localeCompare(b.key));
  const { key: _k, ...t } = totals;
  return {
    groupBy,
    since: window.since ?? null,
    until: window.until ?? null,
    rows: sorted,
    totals: { ...t, costUsd: roundUsd(t.costUsd), userBilledCostUsd: roundUsd(t.userBilledCostUsd) },
  };
}

/** The part of a bucket that users paid with their own credentials, kept apart from `costUsd`. */
function addUserBilled(
  row: Pick<UsageRow, 'userBilledCostUsd' | 'userBilledRequests'>,
  b: Pick<UsageBucket, 'userBilledCostUsd' | 'userBilledRequests'>,
): void {
  row.userBilledCostUsd += b.userBilledCostUsd;
  row.userBilledRequests += b.userBilledRequests;
}

export type TopBy = 'cost' | 'tokens' | 'requests';

export interface TopRow {
  userId: string;
  email: string;
  team: string | null;
  value: number;
  /** This user's part of the total, 0..1. */
  share: number;
  requests: number;
  tokens: number;
  costUsd: number;
  unpricedRequests: number;
}

/** Ranks users by cost, tokens or requests, with each one's share of everyone's total. */
export async function topUsers(
  buckets: UsageBucket[],
  by: TopBy,
  limit: number,
): Promise<{ total: number; rows: TopRow[] }> {
  const users = new Map<string, TopRow>();
  await eachInTurns(buckets, (b) => {
    let r = users.get(b.userId);
    if (!r) {
      r = {
        userId: b.userId,
        email: b.userEmail,
        team: b.team,
        value: 0,
        share: 0,
        requests: 0,
        tokens: 0,
        costUsd: 0,
        unpricedRequests: 0,
      };
      users.set(b.userId, r);
    }
    r.requests += b.requests;
    r.tokens += totalTokens(b.usage);
    r.costUsd += b.costUsd;
    r.unpricedRequests += b.unpricedRequests;
  });
  let total = 0;
  for (const r of users.values()) {
    r.value = by === 'cost' ? r.costUsd : by === 'tokens' ? r.tokens : r.requests;
    total += r.value;
  }
  const rows = [...users.values()]
    .sort((a, b) => b.value - a.value || a.email.localeCompare(b.email))
    .slice(0, limit)
    .map((r) => ({
      ...r,
      value: by === 'cost' ? roundUsd(r.value) : r.value,
      costUsd: roundUsd(r.costUsd),
      share: total > 0 ? r.value / total : 0,
    }));
  return { total: by === 'cost' ? roundUsd(total) : total, rows };
}

const CSV_COLUMNS = [
  'key',
  'requests',
  'input',
  'output',
  'cacheRead',
  'cacheWrite',
  'reasoning',
  'costUsd',
  'unpricedRequests',
] as const;

export function csvHeader(): string {
  return csvLine(CSV_COLUMNS);
}

export function csvRow(r: UsageRow): string {
  const u = r.usage;
  return csvLine([
    r.key,
    r.requests,
    u.input,
    u.output,
    u.cacheRead,
    u.cacheWrite,
    u.reasoning,
    r.costUsd,
    r.unpricedRequests,
  ]);
}
