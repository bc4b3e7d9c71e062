import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import type { Interception } from '../../../shared/interception';
import { addUsage } from '../../../shared/usage';
import { addToBuckets, bucketKey, hourOf, OTHER_MODELS, type UsageBucket } from '../../core/rollup';
import { replaceFile } from './atomic-json-file';
import { syncDir } from './sync-dir';

/**
 * The rollups of records retention pruned from the embedded store, so a restart still has them.
 * The store rebuilds its rollups from the journal at each open; without this, spend of a budget
 * period longer than the retention window (a month's, with 7 days kept) dropped to what the kept
 * records held at every restart, and members got the difference back to spend.
 *
 * One group of JSON lines per prune, appended and fsynced before the records go: `{"throughSeq":
 * N, "group": id, "buckets": […], "more": true}` lines, then one without `more`: the buckets of the pruned
 * records numbered up to N that no earlier group holds. A group counts only once its last line is
 * whole, so a crash mid-write loses nothing: its records were not deleted yet, and roll up from the
 * journal as before. At open, records numbered up to the highest `throughSeq` are not rolled up
 * again (a crash between the group and the deletion leaves both; the store then finishes the
 * deletion). The file is rewritten compacted at open: one summed group, and hours older than
 * FOLD_AFTER_DAYS folded into their day, so it grows with days of history, not with prunes.
 */
export class PrunedRollups {
  readonly file: string;

  constructor(dataDir: string) {
    this.file = path.join(dataDir, FILE);
  }

  /**
   * Every stored bucket, summed by key with hours before `foldBefore` (ms) folded into their day;
   * the highest whole group's `throughSeq` (0: none); whether a rewrite would make the file smaller
   * (more than one group, a torn line, something folded).
   */
  async load(
    foldBefore: number,
    onBadLine?: (line: number) => void,
  ): Promise<{ buckets: UsageBucket[]; throughSeq: number; compactable: boolean }> {
    const sums = new Map<string, UsageBucket>();
    let through = 0;
    let groups = 0;
    let bad = false;
    let folded = false;
    let group: UsageBucket[] = [];
    let groupId: string | undefined;
    let n = 0;
    try {
      // Line by line: a year of an organisation's rollups is more than one string can hold.
      const lines = readline.createInterface({ input: createReadStream(this.file), crlfDelay: Infinity });
      for await (const line of lines) {
        n++;
        if (line === '') continue;
        const entry = parseLine(line);
        if (!entry) {
          bad = true;
          group = [];
          onBadLine?.(n);
          continue;
        }
        // Lines left of a group a failure cut short (its last line never written) are not this one's.
        if (group.length > 0 && entry.group !== groupId) {
          bad = true;
          group = [];
        }
        groupId = entry.group;
        for (const b of entry.buckets) group.push(b);
        if (entry.more) continue;
        groups++;
        for (const b of group) folded = add(sums, b, foldBefore) || folded;
        group = [];
        if (entry.throughSeq > through) through = entry.throughSeq;
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    // A group without its last line is one a crash cut short.
    if (group.length > 0) bad = true;
    return { buckets: [...sums.values()], throughSeq: through, compactable: groups > 1 || bad || folded };
  }

  /** Replaces the file with `buckets` as one group, atomically (atomic-json-file.ts `replaceFile`). */
  async compact(buckets: readonly UsageBucket[], throughSeq: number): Promise<void> {
    await replaceFile(this.file, groupText(throughSeq, buckets));
  }

  /**
   * Appends one prune's buckets, durably, before its records are deleted. Throws when not all of it
   * reached the disk (full, say), with the file cut back to where it was: the prune then deletes
   * nothing.
   */
  async append(throughSeq: number, buckets: readonly UsageBucket[]): Promise<void> {
    const fh = await fs.open(this.file, 'a+', 0o600);
    let size = 0;
    try {
      size = (await fh.stat()).size;
      // A tail a crash left without its newline (a group cut short) is not glued to this one.
      let text = groupText(throughSeq, buckets);
      if (size > 0) {
        const last = Buffer.alloc(1);
        await fh.read(last, 0, 1, size - 1);
        if (last[0] !== 0x0a) text = `\n${text}`;
      }
      // writeFile writes until all of it is written, or throws.
      await fh.writeFile(text);
      await fh.datasync();
    } catch (err) {
      await fh.truncate(size).catch(() => undefined);
      throw err;
    } finally {
      await fh.close();
    }
    if (size === 0) await syncDir(path.dirname(this.file));
  }
}

/** Rollups older than this many days are kept by the day: past the longest budget period (a month), with room. */
export const FOLD_AFTER_DAYS = 62;

/** Buckets per line: a prune of a large backlog is several lines, never one string too long to read. */
const BUCKETS_PER_LINE = 10_000;

function groupText(throughSeq: number, buckets: readonly UsageBucket[]): string {
  const group = randomUUID();
  let out = '';
  for (let i = 0; i < buckets.length || i === 0; i += BUCKETS_PER_LINE) {
    const more = i + BUCKETS_PER_LINE < buckets.length;
    out += `${JSON.stringify({ throughSeq, group, buckets: buckets.slice(i, i + BUCKETS_PER_LINE), ...(more ? { more } : {}) })}\n`;
  }
  return out;
}

/** `buckets` summed by key, those of hours before `foldBefore` (ms) folded into their day. */
export function foldedByDay(buckets: Iterable<UsageBucket>, foldBefore: number): UsageBucket[] {
  const sums = new Map<string, UsageBucket>();
  for (const b of buckets) add(sums, b, foldBefore);
  return [...sums.values()];
}

/** Sums `b` into `sums`, its hour folded to its day when before `foldBefore`; true when it was folded. */
function add(sums: Map<string, UsageBucket>, b: UsageBucket, foldBefore: number): boolean {
  const t = Date.parse(b.hour);
  const fold = t < foldBefore && t % DAY !== 0;
  const hour = fold ? new Date(t - (t % DAY)).toISOString() : b.hour;
  const key = bucketKey({ ...b, hour });
  const was = sums.get(key);
  if (was) sumBucket(was, b);
  else sums.set(key, { ...copyBucket(b), hour });
  return fold;
}

const DAY = 86_400_000;

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
function parseLine(
  line: string,
): { throughSeq: number; group: string | undefined; buckets: UsageBucket[]; more: boolean } | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const { throughSeq, group, buckets, more } = v as {
    throughSeq?: unknown;
    group?: unknown;
    buckets?: unknown;
    more?: unknown;
  };
  if (!isNumber(throughSeq) || !Array.isArray(buckets)) return undefined;
  for (const b of buckets) if (!isBucket(b)) return undefined;
  return {
    throughSeq,
    group: typeof group === 'string' ? group : undefined,
    buckets: buckets as UsageBucket[],
    more: more === true,
  };
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
