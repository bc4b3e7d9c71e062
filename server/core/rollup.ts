import type { Interception } from '../../shared/interception';
import { addUsage, emptyUsage, type Usage } from '../../shared/usage';

/** What one user spent on one model from one client in one hour: the unit every spend query sums. */
export interface UsageBucket {
  /** Start of the hour (UTC, ISO 8601). */
  hour: string;
  userId: string;
  userEmail: string;
  team: string | null;
  provider: string;
  model: string | null;
  client: string;
  requests: number;
  usage: Usage;
  /** Sum of the priced requests' cost to the organisation (what budgets count). */
  costUsd: number;
  /** Requests whose price was unknown (their cost is in no sum). */
  unpricedRequests: number;
  /** Sum of the priced requests sent with the user's own credential (`billedTo: "user"`): in no budget. */
  userBilledCostUsd: number;
  /** Requests sent with the user's own credential (also in `requests`). */
  userBilledRequests: number;
}

export interface BucketQuery {
  /** Inclusive, ISO 8601; buckets are included by their hour. */
  since?: string | undefined;
  /** Exclusive. */
  until?: string | undefined;
  userId?: string | undefined;
  team?: string | undefined;
}

/** Money sums of many small floats drift; a report shows micro-dollars. */
export function roundUsd(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}

const HOUR = 3_600_000;

/** The last hour formatted: records arrive in the same hour for an hour, each would format it again. */
let lastHour = Number.NaN;
let lastHourIso = '';

export function hourOf(iso: string): string {
  const t = Date.parse(iso);
  const hour = t - (t % HOUR);
  if (hour === lastHour) return lastHourIso;
  const formatted = new Date(hour).toISOString();
  lastHour = hour;
  lastHourIso = formatted;
  return formatted;
}

/** Widens a window to whole hours, the rollups' grain. */
export function hourWindow(since?: string, until?: string): { since?: string; until?: string } {
  const out: { since?: string; until?: string } = {};
  if (since !== undefined) out.since = hourOf(since);
  if (until !== undefined) {
    const t = Date.parse(until);
    out.until = new Date(t % HOUR === 0 ? t : t - (t % HOUR) + HOUR).toISOString();
  }
  return out;
}

export function bucketKey(b: Pick<UsageBucket, 'hour' | 'userId' | 'provider' | 'model' | 'client'>): string {
  return [b.hour, b.userId, b.provider, b.model ?? '', b.client].join('\u0000');
}

export function bucketFor(rec: Interception): UsageBucket {
  return {
    hour: hourOf(rec.startedAt),
    userId: rec.userId,
    userEmail: rec.userEmail,
    team: rec.team,
    provider: rec.provider,
    model: rec.model,
    client: rec.client,
    requests: 0,
    usage: emptyUsage(),
    costUsd: 0,
    unpricedRequests: 0,
    userBilledCostUsd: 0,
    userBilledRequests: 0,
  };
}

/**
 * Adds one finished interception to its bucket in `buckets` (keyed by `bucketKey`), making the
 * bucket with its first record.
 */
/** Returns the bucket it made, when the record is the first of its key. */
export function addToBuckets(buckets: Map<string, UsageBucket>, rec: Interception): UsageBucket | undefined {
  const key = bucketKey({
    hour: hourOf(rec.startedAt),
    userId: rec.userId,
    provider: rec.provider,
    model: rec.model,
    client: rec.client,
  });
  const b = buckets.get(key);
  if (b) {
    addToBucket(b, rec);
    return undefined;
  }
  const made = bucketFor(rec);
  buckets.set(key, made);
  addToBucket(made, rec);
  return made;
}

/**
 * Adds one finished interception to its bucket. A user-billed request counts as a request with its
 * tokens, and its cost goes apart from the organisation's, so budgets and spend never include it.
 */
export function addToBucket(b: UsageBucket, rec: Interception): void {
  b.requests += 1;
  b.usage = addUsage(b.usage, rec.usage);
  const byUser = rec.billedTo === 'user';
  if (byUser) b.userBilledRequests += 1;
  if (rec.costUsd !== null) {
    if (byUser) b.userBilledCostUsd += rec.costUsd;
    else b.costUsd += rec.costUsd;
  } else if (rec.priceKnown === false) b.unpricedRequests += 1;
}
