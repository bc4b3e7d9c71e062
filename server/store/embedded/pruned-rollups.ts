import fs from 'node:fs/promises';
import path from 'node:path';
import type { Interception } from '../../../shared/interception';
import { addUsage } from '../../../shared/usage';
import { addToBuckets, bucketKey, hourOf, OTHER_MODELS, type UsageBucket } from '../../core/rollup';

/**
 * The rollups of records retention pruned from the embedded store, so a restart still has them.
 * The store rebuilds its rollups from the journal at each open; without this, spend of a budget
 * period longer than the retention window (a month's, with 7 days kept) dropped to what the kept
 * records held at every restart, and members got the difference back to spend.
 *
 * One JSON line per prune, appended and fsynced before the records go: `{"throughSeq": N,
 * "buckets": […]}`, the buckets of the pruned records numbered up to N that an earlier line does
 * not hold. Append-only, so a prune writes what it pruned and nothing more. At open, records
 * numbered up to the highest `throughSeq` are not rolled up again (a crash between the line and
 * the deletion leaves both). A torn last line (a crash mid-write) is skipped: its records were not
 * deleted yet, so they roll up from the journal as before.
 */
export class PrunedRollups {
  readonly file: string;

  constructor(dataDir: string) {
    this.file = path.join(dataDir, FILE);
  }

  /** Hands each stored bucket to `onBucket`, oldest prune first; returns the highest `throughSeq` (0: none). */
  async read(onBucket: (b: UsageBucket) => void, onBadLine?: (line: number) => void): Promise<number> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    let through = 0;
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      const entry = parseLine(line);
      if (!entry) {
        onBadLine?.(i + 1);
        continue;
      }
      for (const b of entry.buckets) onBucket(b);
      if (entry.throughSeq > through) through = entry.throughSeq;
    }
    return through;
  }

  /** Every stored bucket, summed by key (what `aibridge store copy` carries over). */
  async buckets(): Promise<UsageBucket[]> {
    const sums = new Map<string, UsageBucket>();
    await this.read((b) => {
      const key = bucketKey(b);
      const was = sums.get(key);
      if (was) sumBucket(was, b);
      else sums.set(key, copyBucket(b));
    });
    return [...sums.values()];
  }

  /** Appends one prune's buckets, durably (the file and, when it is new, its directory). */
  async append(throughSeq: number, buckets: readonly UsageBucket[]): Promise<void> {
    const created = !(await fs.stat(this.file).then(
      () => true,
      () => false,
    ));
    const fh = await fs.open(this.file, 'a', 0o600);
    try {
      await fh.write(`${JSON.stringify({ throughSeq, buckets })}\n`);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    if (created) {
      const dir = await fs.open(path.dirname(this.file), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    }
  }
}

export const FILE = 'pruned-rollups.jsonl';

/**
 * Sums pruned records into buckets as the store's rollups do, with the same cap on a user-hour's
 * models (made-up model names, one per request, would otherwise make a bucket each here too).
 */
export class PrunedSums {
  private readonly sums = new Map<string, UsageBucket>();
  private readonly modelsPerUserHour = new Map<string, number>();

  constructor(private readonly cap: number) {}

  add(rec: Interception): void {
    const made = addToBuckets(this.sums, this.capped(rec));
    if (made && made.model !== OTHER_MODELS) {
      const userHour = `${made.hour}\u0000${made.userId}`;
      this.modelsPerUserHour.set(userHour, (this.modelsPerUserHour.get(userHour) ?? 0) + 1);
    }
  }

  private capped(rec: Interception): Interception {
    const hour = hourOf(rec.startedAt);
    const key = bucketKey({
      hour,
      userId: rec.userId,
      provider: rec.provider,
      model: rec.model,
      client: rec.client,
    });
    if (this.sums.has(key)) return rec;
    const held = this.modelsPerUserHour.get(`${hour}\u0000${rec.userId}`) ?? 0;
    return held >= this.cap ? { ...rec, model: OTHER_MODELS } : rec;
  }

  /** The buckets, oldest hour first. */
  values(): UsageBucket[] {
    return [...this.sums.values()].sort((a, b) => (a.hour < b.hour ? -1 : a.hour > b.hour ? 1 : 0));
  }
}

/** Adds `from`'s counts to `into` (same key). */
export function sumBucket(into: UsageBucket, from: UsageBucket): void {
  into.requests += from.requests;
  into.usage = addUsage(into.usage, from.usage);
  into.costUsd += from.costUsd;
  into.unpricedRequests += from.unpricedRequests;
  into.userBilledCostUsd += from.userBilledCostUsd;
  into.userBilledRequests += from.userBilledRequests;
}

export function copyBucket(b: UsageBucket): UsageBucket {
  return { ...b, usage: { ...b.usage } };
}

function isNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** A line as written by `append`, checked field by field; undefined for anything else. */
function parseLine(line: string): { throughSeq: number; buckets: UsageBucket[] } | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const { throughSeq, buckets } = v as { throughSeq?: unknown; buckets?: unknown };
  if (!isNumber(throughSeq) || !Array.isArray(buckets)) return undefined;
  for (const b of buckets) if (!isBucket(b)) return undefined;
  return { throughSeq, buckets: buckets as UsageBucket[] };
}

function isBucket(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const b = v as Record<string, unknown>;
  const u = b.usage as Record<string, unknown> | undefined;
  return (
    typeof b.hour === 'string' &&
    typeof b.userId === 'string' &&
    typeof b.userEmail === 'string' &&
    (b.team === null || typeof b.team === 'string') &&
    typeof b.provider === 'string' &&
    (b.model === null || typeof b.model === 'string') &&
    typeof b.client === 'string' &&
    isNumber(b.requests) &&
    isNumber(b.costUsd) &&
    isNumber(b.unpricedRequests) &&
    isNumber(b.userBilledCostUsd) &&
    isNumber(b.userBilledRequests) &&
    typeof u === 'object' &&
    u !== null &&
    isNumber(u.input) &&
    isNumber(u.output) &&
    isNumber(u.cacheRead) &&
    isNumber(u.cacheWrite) &&
    isNumber(u.reasoning)
  );
}
