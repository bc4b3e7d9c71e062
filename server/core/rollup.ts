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

/**
 * The model of a bucket summing a user-hour's models past the embedded store's cap on them
 * (MODELS_PER_USER_HOUR): no model's name, and nothing to price.
 */
export const OTHER_MODELS = '(other models)';

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
let lastHourPrefix = '';

/** Whether a time string has toISOString's form (`YYYY-MM-DDTHH:mm:ss.sssZ`), as far as a cheap look tells. */
export function canonicalIso(iso: string): boolean {
  return (
    iso.length === 24 &&
    iso.charCodeAt(23) === 0x5a &&
    iso.charCodeAt(10) === 0x54 &&
    iso.charCodeAt(13) === 0x3a &&
    iso.charCodeAt(16) === 0x3a &&
    iso.charCodeAt(19) === 0x2e
  );
}

/** Whether a time in toISOString's form falls in the hour hourOf formatted last. */
function inLastHour(iso: string): boolean {
  return canonicalIso(iso) && lastHourIso !== '' && iso.startsWith(lastHourPrefix);
}

/**
 * `Date.parse(iso)`, without the parse for a time in toISOString's form in the last hour hourOf
 * formatted (every new record's): that hour plus the minutes, seconds and milliseconds read off.
 */
export function isoMs(iso: string): number {
  if (inLastHour(iso)) {
    const min = digitAt(iso, 14) * 10 + digitAt(iso, 15);
    const sec = digitAt(iso, 17) * 10 + digitAt(iso, 18);
    const ms = digitAt(iso, 20) * 100 + digitAt(iso, 21) * 10 + digitAt(iso, 22);
    // NaN (not a digit) fails every comparison: the parse then says what the text is.
    if (min < 60 && sec < 60 && ms >= 0) return lastHour + (min * 60 + sec) * 1000 + ms;
  }
  return Date.parse(iso);
}

function digitAt(s: string, i: number): number {
  const d = s.charCodeAt(i) - 48;
  return d >= 0 && d <= 9 ? d : Number.NaN;
}

export function hourOf(iso: string): string {
  // A time as toISOString writes it (every record's) in the last hour: its first 13 characters
  // (`YYYY-MM-DDTHH`) are the hour's, with no parse.
  if (inLastHour(iso)) return lastHourIso;
  const t = Date.parse(iso);
  const hour = t - (t % HOUR);
  if (hour === lastHour) return lastHourIso;
  const formatted = new Date(hour).toISOString();
  lastHour = hour;
  lastHourIso = formatted;
  lastHourPrefix = formatted.slice(0, 13);
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
