import type { EngagementRow, EngagementSort, SortOrder } from '../../shared/engagement';
import type { User } from '../../shared/identity';
import { emptyUsage, totalTokens, type Usage } from '../../shared/usage';
import { roundUsd, type UsageBucket } from '../core/rollup';
import { csvLine } from '../http/csv';
import { addBucket } from './usage-report';

interface Sums {
  requests: number;
  usage: Usage;
  costUsd: number;
  unpricedRequests: number;
  days: Set<string>;
}

/** The value a row is ranked by; a user who never made a request ranks below every date. */
function rankOf(r: EngagementRow, sort: Exclude<EngagementSort, 'email'>): number {
  switch (sort) {
    case 'cost':
      return r.costUsd;
    case 'requests':
      return r.requests;
    case 'tokens':
      return r.tokens.total;
    case 'activeDays':
      return r.activeDays;
    case 'lastUsedAt':
      return r.lastUsedAt === null ? Number.NEGATIVE_INFINITY : Date.parse(r.lastUsedAt);
  }
}

/**
 * Every provisioned user (`users`), with what the window's hourly buckets say they used and on how
 * many UTC days, and their last request ever: zeros for those who made none. Ties are broken by
 * email, ascending, whatever the order, so pages and exports are stable.
 */
export function engagementRows(
  users: readonly User[],
  buckets: readonly UsageBucket[],
  lastRequests: ReadonlyMap<string, string>,
  sort: EngagementSort,
  order: SortOrder,
): EngagementRow[] {
  const sums = new Map<string, Sums>();
  for (const b of buckets) {
    let s = sums.get(b.userId);
    if (!s) {
      s = { requests: 0, usage: emptyUsage(), costUsd: 0, unpricedRequests: 0, days: new Set() };
      sums.set(b.userId, s);
    }
    addBucket(s, b);
    if (b.requests > 0) s.days.add(b.hour.slice(0, 10));
  }
  const rows = users.map((u): EngagementRow => {
    const s = sums.get(u.id);
    const usage = s?.usage ?? emptyUsage();
    return {
      userId: u.id,
      email: u.email,
      name: u.name,
      team: u.team,
      role: u.role,
      createdAt: u.createdAt,
      requests: s?.requests ?? 0,
      tokens: { ...usage, total: totalTokens(usage) },
      costUsd: roundUsd(s?.costUsd ?? 0),
      unpricedRequests: s?.unpricedRequests ?? 0,
      activeDays: s?.days.size ?? 0,
      lastUsedAt: lastRequests.get(u.id) ?? null,
    };
  });
  const sign = order === 'asc' ? 1 : -1;
  return rows.sort((a, b) => {
    const byEmail = a.email.localeCompare(b.email);
    if (sort === 'email') return sign * byEmail;
    return sign * (rankOf(a, sort) - rankOf(b, sort)) || byEmail;
  });
}

const CSV_COLUMNS = [
  'email',
  'name',
  'team',
  'role',
  'createdAt',
  'requests',
  'input',
  'output',
  'cacheRead',
  'cacheWrite',
  'reasoning',
  'totalTokens',
  'costUsd',
  'unpricedRequests',
  'activeDays',
  'lastUsedAt',
] as const;

export function engagementCsvHeader(): string {
  return csvLine(CSV_COLUMNS);
}

export function engagementCsvRow(r: EngagementRow): string {
  const t = r.tokens;
  return csvLine([
    r.email,
    r.name,
    r.team,
    r.role,
    r.createdAt,
    r.requests,
    t.input,
    t.output,
    t.cacheRead,
    t.cacheWrite,
    t.reasoning,
    t.total,
    r.costUsd,
    r.unpricedRequests,
    r.activeDays,
    r.lastUsedAt,
  ]);
}
