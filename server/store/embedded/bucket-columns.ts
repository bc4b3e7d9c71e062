import { OPTIONAL_USAGE, type Usage } from '../../../shared/usage';
import type { UsageBucket } from '../../core/rollup';

/**
 * Rollup buckets as columns, for the store's checkpoint (checkpoint.ts): their strings once each in
 * a table, referred to by number, and their counts in one array of numbers. An organisation's month
 * is about a bucket a record (10,000 users, a few requests per user-hour); as objects, serialised
 * one by one, they took more to read back than the records they sum.
 */
const TEXT = ['hour', 'userId', 'userEmail', 'team', 'provider', 'model', 'client'] as const;
const COUNTS = [
  'requests',
  'costUsd',
  'unpricedRequests',
  'userBilledCostUsd',
  'userBilledRequests',
] as const;
const USAGE = [
  'input',
  'output',
  'cacheRead',
  'cacheWrite',
  'reasoning',
  ...OPTIONAL_USAGE,
] as const satisfies readonly (keyof Usage)[];

/** A text field's null (team, model). */
const NULL = 0xffff_ffff;
const NUMBERS = COUNTS.length + USAGE.length;

export interface BucketColumns {
  strings: string[];
  /** TEXT.length references a bucket, into `strings` (NULL for null). */
  text: Uint32Array;
  /** NUMBERS a bucket: COUNTS, then USAGE (NaN: a count the usage does not have). */
  numbers: Float64Array;
}

export function bucketsToColumns(buckets: readonly UsageBucket[]): BucketColumns {
  const ids = new Map<string, number>();
  const strings: string[] = [];
  const text = new Uint32Array(buckets.length * TEXT.length);
  const numbers = new Float64Array(buckets.length * NUMBERS);
  buckets.forEach((b, i) => {
    TEXT.forEach((field, f) => {
      const v = b[field];
      let id = NULL;
      if (v !== null) {
        id = ids.get(v) ?? strings.length;
        if (id === strings.length) {
          ids.set(v, id);
          strings.push(v);
        }
      }
      text[i * TEXT.length + f] = id;
    });
    const at = i * NUMBERS;
    COUNTS.forEach((field, f) => {
      numbers[at + f] = b[field];
    });
    USAGE.forEach((field, f) => {
      numbers[at + COUNTS.length + f] = b.usage[field] ?? Number.NaN;
    });
  });
  return { strings, text, numbers };
}

/** The buckets back, in order; each text field's string shared between the buckets that hold it. */
export function columnsToBuckets(c: BucketColumns): UsageBucket[] {
  const count = c.text.length / TEXT.length;
  if (!Number.isInteger(count) || c.numbers.length !== count * NUMBERS)
    throw new Error("the checkpoint's rollups do not fit together");
  const str = (i: number, f: number): string | null => {
    const id = c.text[i * TEXT.length + f]!;
    if (id === NULL) return null;
    const s = c.strings[id];
    if (s === undefined) throw new Error("the checkpoint's rollups name a string it does not hold");
    return s;
  };
  const out: UsageBucket[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const at = i * NUMBERS;
    const n = (k: number): number => c.numbers[at + k]!;
    const usage: Usage = {
      input: n(COUNTS.length),
      output: n(COUNTS.length + 1),
      cacheRead: n(COUNTS.length + 2),
      cacheWrite: n(COUNTS.length + 3),
      reasoning: n(COUNTS.length + 4),
    };
    for (let f = 5; f < USAGE.length; f++) {
      const v = n(COUNTS.length + f);
      if (!Number.isNaN(v)) usage[USAGE[f]!] = v;
    }
    out[i] = {
      hour: str(i, 0) ?? '',
      userId: str(i, 1) ?? '',
      userEmail: str(i, 2) ?? '',
      team: str(i, 3),
      provider: str(i, 4) ?? '',
      model: str(i, 5),
      client: str(i, 6) ?? '',
      requests: n(0),
      usage,
      costUsd: n(1),
      unpricedRequests: n(2),
      userBilledCostUsd: n(3),
      userBilledRequests: n(4),
    };
  }
  return out;
}
