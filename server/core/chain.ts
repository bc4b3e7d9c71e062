import { hash as digest } from 'node:crypto';
import type { Interception } from '../../shared/interception';

/** The hash a chain starts from, before the first record. */
export const GENESIS = '0'.repeat(64);

/**
 * JSON with object keys sorted at every level, so a record hashes the same whatever store reorders
 * its keys. Built as one string, with no entry arrays per object: it runs on every record written.
 * The output must stay byte-identical to what older versions hashed (stored hashes verify against
 * it): undefined object values are left out, anything else JSON cannot hold (undefined in an array,
 * functions, symbols) is `null`, an array's holes are empty (`[1,,2]`), and objects are walked by
 * their own enumerable keys only (no `toJSON`).
 */
export function canonicalJson(v: unknown): string {
  // Scalars without a call into JSON.stringify where its output is known: a record has some thirty
  // of them, and the calls were a third of the canonical form's time.
  switch (typeof v) {
    case 'string':
      return NEEDS_ESCAPE.test(v) ? JSON.stringify(v) : `"${v}"`;
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      if (v === null) return 'null';
      break;
    default: {
      const json = JSON.stringify(v);
      if (json !== undefined) return json;
      // Only a value JSON.stringify leaves out or turns to null in an array gets here.
      if (v !== undefined) notJson = true;
      return 'null';
    }
  }
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out += ',';
      // A hole stays empty, as `map` + `join` left it.
      if (i in v) out += canonicalJson(v[i]);
      else notJson = true;
    }
    return `${out}]`;
  }
  const o = v as Record<string, unknown>;
  if (typeof o.toJSON === 'function') notJson = true;
  const keys = sortedKeys(o);
  let out = '{';
  let first = true;
  for (const k of keys) {
    const x = o[k];
    if (x === undefined) continue;
    if (first) first = false;
    else out += ',';
    out += keyJson(k) + canonicalJson(x);
  }
  return `${out}}`;
}

/**
 * An object's own enumerable keys in sorted order. Records and their parts have the same keys in
 * the same order record after record, so the last sorted list for each key count is kept and
 * handed back when the keys are the same (names are interned: each is one comparison), which
 * spares a sort of some thirty names per record.
 */
function sortedKeys(o: object): string[] {
  const keys = Object.keys(o);
  const n = keys.length;
  if (n < 2) return keys;
  const last = n < SORTED_MEMO_SLOTS ? sortedMemo[n] : undefined;
  if (last !== undefined && sameKeys(last.keys, keys)) return last.sorted;
  // Default sort compares UTF-16 code units, the same order as `<` on the keys.
  const sorted = keys.slice().sort();
  // Kept only for names of a usual length, as keyJson's memo: client-chosen names (tool inputs)
  // cannot pin long strings here.
  if (n < SORTED_MEMO_SLOTS && keys.every((k) => k.length <= 64)) sortedMemo[n] = { keys, sorted };
  return sorted;
}

const SORTED_MEMO_SLOTS = 64;
const sortedMemo: ({ keys: readonly string[]; sorted: string[] } | undefined)[] = [];

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * What JSON.stringify escapes in a string: a quote, a backslash, a control character, and a lone
 * surrogate (any surrogate is sent its way, paired or not). A string without one is written as it is.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * `"key":` per key name. Records use a few dozen names over and over; quoting each again was about
 * a third of the canonical form's time. Bounded in count and length, so client-chosen names (tool
 * inputs) cannot grow it.
 */
const keyJsonMemo = new Map<string, string>();
const KEY_MEMO_LIMIT = 2048;

function keyJson(k: string): string {
  let s = keyJsonMemo.get(k);
  if (s === undefined) {
    s = `${JSON.stringify(k)}:`;
    if (k.length <= 64 && keyJsonMemo.size < KEY_MEMO_LIMIT) keyJsonMemo.set(k, s);
  }
  return s;
}

/**
 * Set when the canonical form met something JSON.stringify writes otherwise (a hole, a function or
 * symbol, an object with `toJSON`): that form is still what is hashed, but it is no journal line.
 */
let notJson = false;

type Unhashed = Omit<Interception, 'hash'> & { hash?: string };

/** SHA-256 over the previous record's hash and this record (all of it but its own hash). */
export function chainHash(prevHash: string, rec: Unhashed): string {
  return hashed(prevHash, rec).hash;
}

/**
 * A record's hash and the record as JSON with that hash in it, from one serialisation: the
 * canonical JSON that is hashed is also the stored line (`{"hash":…,` then its sorted keys), so a
 * store need not serialise the record a second time. Its readers parse it, and neither they nor the
 * verifier (which hashes the canonical form) care about key order.
 */
export function chainLink(prevHash: string, rec: Unhashed): { hash: string; json: string } {
  const { rest, canonical, hash } = hashed(prevHash, rec);
  // Records are plain JSON data; anything else is written as JSON.stringify writes it, as before.
  if (notJson) return { hash, json: JSON.stringify({ ...rest, hash }) };
  const json = canonical === '{}' ? `{"hash":"${hash}"}` : `{"hash":"${hash}",${canonical.slice(1)}`;
  return { hash, json };
}

/**
 * A new record linked into the chain at `seq` after `prevHash`: a copy of it with its place and
 * hash, and its stored JSON (chainLink). The copy's added keys come first and are set after the
 * spread: the same values as `{ ...rec, seq, prevHash }`, without a spread clone gaining keys,
 * which costs ~7 µs a record on Node 20 (docs/performance.md, "Spread clones"). `hash` is
 * undefined while the record is hashed, and an undefined value is not part of the canonical form.
 */
export function linkRecord(
  rec: Omit<Interception, 'seq'>,
  seq: number,
  prevHash: string,
): { record: Interception; json: string; hash: string } {
  const record: Interception = { seq: 0, prevHash, hash: undefined, ...rec };
  record.seq = seq;
  record.prevHash = prevHash;
  record.hash = undefined;
  const { hash, json } = chainLink(prevHash, record);
  record.hash = hash;
  return { record, json, hash };
}

function hashed(
  prevHash: string,
  rec: Unhashed,
): { rest: Omit<Interception, 'hash'>; canonical: string; hash: string } {
  // Without a hash of its own (every new record) the record is hashed as it is, not copied first:
  // an undefined value is left out of the canonical form anyway.
  const rest = rec.hash === undefined ? rec : withoutHash(rec);
  notJson = false;
  const canonical = canonicalJson(rest);
  // The canonical form is built as a rope of some hundred pieces. Flattened here, once: the hash
  // input below and the stored line (chainLink's slice) then copy a flat string, where each walked
  // the rope again (~0.8 µs a record, docs/performance.md).
  canonical.charCodeAt(0);
  // prevHash, a newline and the canonical JSON, hashed in one call without a Hash object.
  const hash = digest('sha256', `${prevHash}\n${canonical}`, 'hex');
  return { rest, canonical, hash };
}

function withoutHash(rec: Unhashed): Omit<Interception, 'hash'> {
  const { hash: _own, ...rest } = rec;
  return rest;
}

/**
 * The newest record's place and hash as the store keeps them apart from the records (the embedded
 * store in db.json, PostgreSQL in its chain head row): what a verifier compares the newest record
 * it finds against, so records cut off the end of the chain do not go unnoticed.
 */
export interface ChainHead {
  /** The append position of the newest record ever chained (0: none yet). */
  seq: number;
  hash: string;
}

export const EMPTY_HEAD: ChainHead = Object.freeze({ seq: 0, hash: GENESIS });

/**
 * Where the kept chain starts: records up to `afterSeq` were pruned (or never existed), and the
 * first kept chained record links back to `hash`. Stored by the store (setting `chain_anchor`)
 * when it is first opened with records (trusting what it finds then) and moved only by pruning,
 * so records deleted from the start of the chain show as a break, not as a chain pruned by rule.
 */
export interface ChainAnchor {
  afterSeq: number;
  hash: string;
}

export const GENESIS_ANCHOR: ChainAnchor = Object.freeze({ afterSeq: 0, hash: GENESIS });

export function anchorJson(a: ChainAnchor): string {
  return JSON.stringify({ afterSeq: a.afterSeq, hash: a.hash });
}

/** The stored anchor; null when none is stored or it is not one (then the oldest record is trusted). */
export function parseAnchor(text: string | undefined): ChainAnchor | null {
  if (text === undefined) return null;
  try {
    const a = JSON.parse(text) as Partial<ChainAnchor>;
    return typeof a.afterSeq === 'number' && typeof a.hash === 'string'
      ? { afterSeq: a.afterSeq, hash: a.hash }
      : null;
  } catch {
    return null;
  }
}

/**
 * A store could not read a record back (the embedded store: its line no longer matches its checksum,
 * edited or damaged on disk since the store opened it). To a verifier that is a break at that record.
 */
export class UnreadableRecordError extends Error {
  constructor(readonly seq: number) {
    super(`interception ${seq} is unreadable on disk`);
  }
}

export interface ChainBreak {
  seq: number;
  id: string;
  reason: string;
}

/** Records cut off the end: the chain head says the chain went further than the newest record found. */
export interface ChainTruncation {
  /** Append positions between the newest record found and the head (every one a lost record). */
  missing: number;
  /** The newest record found (0: none). */
  lastSeq: number;
  headSeq: number;
}

export interface ChainReport {
  ok: boolean;
  /** Records checked. */
  checked: number;
  /** The hash the oldest kept record points back to: the genesis, or the last pruned record's hash. */
  anchor: string | null;
  firstBreak: ChainBreak | null;
  /** The head the records were checked against, when the store keeps one. */
  head: ChainHead | null;
  /**
   * The newest chained record checked, when the chain is intact: what to keep outside the bridge.
   * The embedded store keeps its head a little behind its newest records (and a crash or an older
   * version's data leaves it further behind) until its next write.
   */
  newest?: ChainHead | null;
  truncated: ChainTruncation | null;
  /**
   * A head kept outside the bridge, when one was given (`?kept=SEQ:HASH`): whether its record was
   * found and checked (false: pruned since, or before the chain began, so nothing could be compared).
   */
  kept?: ChainHead & { checked: boolean };
}

/**
 * Walks records oldest first and reports the first broken link: an edited record (its hash does
 * not match its content), a deleted one (the next record points back to a hash that is gone), a
 * reordering (the same), or a record without hash fields after chained ones (they were stripped:
 * only records written before the chain existed, all of them before the first chained one, may
 * lack them). With the store's `start` (ChainAnchor), the oldest kept record must link to it, so
 * records deleted from the start show; without one (a store that never stored it), the oldest
 * record is trusted as the anchor.
 * With the store's `head`, the newest records are checked too: a head beyond the last record
 * found is a truncated tail, and the record at the head's place must have the head's hash.
 */
export async function verifyChain(
  records: AsyncIterable<Interception>,
  head: ChainHead | null = null,
  start: ChainAnchor | null = null,
  kept: ChainHead | null = null,
  /**
   * The store's head again, after the walk, where the head moves with every append in one
   * transaction (PostgreSQL): a record past it was added behind the bridge's back. Absent: records
   * past the head are taken for ones appended during the walk.
   */
  headAfter?: () => Promise<ChainHead>,
): Promise<ChainReport> {
  let prev: Interception | undefined;
  let checked = 0;
  /** Records without hash fields found before the first chained one: how many, the first, the highest number. */
  let unchained = 0;
  let firstUnchained: { seq: number; id: string } | undefined;
  let unchainedMaxSeq = Number.NEGATIVE_INFINITY;
  let anchor: string | null = null;
  let keptChecked = false;
  // Only when asked: a report without a kept head has the shape it always had.
  const keptReport = (): Pick<ChainReport, 'kept'> =>
    kept === null ? {} : { kept: { seq: kept.seq, hash: kept.hash, checked: keptChecked } };
  const broken = (rec: { seq: number; id: string }, reason: string): ChainReport => ({
    ok: false,
    checked,
    anchor,
    firstBreak: { seq: rec.seq, id: rec.id, reason },
    head,
    truncated: null,
    ...keptReport(),
  });
  try {
    return await walk();
  } catch (err) {
    if (!(err instanceof UnreadableRecordError)) throw err;
    return broken(
      // Its id is in the line that cannot be read.
      { seq: err.seq, id: '(unreadable)' },
      'is unreadable: its stored line fails its checksum (edited or damaged on disk)',
    );
  }
  async function walk(): Promise<ChainReport> {
    for await (const rec of records) {
      // Records up to where the kept chain starts may still be there (retention moves the anchor
      // before it deletes): checked all the same. Skipped, a record edited behind an anchor moved
      // past it went unseen.
      checked++;
      if (rec.hash === undefined || rec.prevHash === undefined) {
        if (prev !== undefined)
          return broken(rec, 'has no hash or link after chained records (its hash fields were removed)');
        // Written before the chain existed: nothing to check, and the chain starts after it. How
        // many there can be, the chain's first record says (checked when it comes).
        unchained++;
        firstUnchained ??= { seq: rec.seq, id: rec.id };
        if (rec.seq > unchainedMaxSeq) unchainedMaxSeq = rec.seq;
        continue;
      }
      // The chain's first record is numbered after the records written before it, and its number
      // is in its hash: only those numbered below it, at most one per number, may lack hash fields.
      // One more is a record put in front of the chain (in a chain from the first record, any).
      if (prev === undefined && firstUnchained) {
        // The chain's first record links to where the store says the chain starts; one that links
        // elsewhere followed chained records whose hash fields were taken off.
        const stripped = start !== null && rec.prevHash !== start.hash;
        if (stripped || unchained > rec.seq - 1 || unchainedMaxSeq >= rec.seq)
          return broken(
            firstUnchained,
            stripped
              ? `has no hash or link, and the chained record after it does not link to where the chain starts (its hash fields were removed)`
              : rec.seq === 1
                ? 'has no hash or link, and the chain begins at the first record (added, or its hash fields were removed)'
                : `has no hash or link, and the chain begins at record ${rec.seq}: only the ${rec.seq - 1} records before it may lack them (added, or its hash fields were removed)`,
          );
      }
      if (rec.hash !== chainHash(rec.prevHash, rec))
        return broken(rec, 'content does not match its hash (edited)');
      if (start !== null && rec.seq === start.afterSeq && rec.hash !== start.hash)
        return broken(
          rec,
          `does not match where the kept chain starts (the store's anchor names another record ${start.afterSeq}: moved)`,
        );
      // Records missing at or before where the kept chain starts are being pruned (a prune deletes
      // in chunks after moving the anchor, while a verify reads): the chain picks up after them.
      if (start !== null && prev !== undefined && prev.seq < start.afterSeq && rec.seq > prev.seq + 1)
        prev = undefined;
      if (prev === undefined) {
        anchor ??= rec.prevHash;
        if (start !== null && rec.seq > start.afterSeq && rec.prevHash !== start.hash)
          return broken(
            rec,
            `does not start the kept chain: records after ${start.afterSeq} and before it were deleted (nothing was pruned past record ${start.afterSeq})`,
          );
      } else if (rec.prevHash !== prev.hash) {
        const gap = rec.seq - prev.seq - 1;
        return broken(
          rec,
          `does not follow record ${prev.seq} (a record was deleted or moved${gap > 0 ? `: ${gap} missing before it` : ''})`,
        );
      } else if (rec.seq <= prev.seq) return broken(rec, 'out of order');
      else if (rec.seq !== prev.seq + 1) {
        // Links that hold across a gap were recomputed: records are numbered one after another as
        // they are chained, so a missing number is a record taken out and the rest relinked.
        const gap = rec.seq - prev.seq - 1;
        return broken(
          rec,
          `follows record ${prev.seq} with ${gap} missing before it (deleted, and the records after it relinked)`,
        );
      }
      if (head !== null && rec.seq === head.seq && rec.hash !== head.hash)
        return broken(rec, 'does not match the chain head the store keeps (replaced)');
      if (kept !== null && rec.seq === kept.seq) {
        // Whoever can rewrite both the records and the store's head can forge a consistent tail;
        // a head kept outside the bridge before that still names the record as it was.
        if (rec.hash !== kept.hash)
          return broken(rec, 'does not match the hash kept outside the bridge (rewritten since it was kept)');
        keptChecked = true;
      }
      prev = rec;
    }
    const lastSeq = prev?.seq ?? 0;
    if (
      headAfter &&
      prev !== undefined &&
      head !== null &&
      lastSeq > head.seq &&
      lastSeq > (await headAfter()).seq
    )
      return broken(prev, 'is past the chain head the store keeps (added behind the bridge’s back)');
    // A head kept outside counts as much as the store's: records it saw cannot have vanished.
    const headSeq = Math.max(head?.seq ?? 0, kept?.seq ?? 0);
    if (headSeq > lastSeq) {
      return {
        ok: false,
        checked,
        anchor,
        firstBreak: null,
        head,
        truncated: { missing: headSeq - lastSeq, lastSeq, headSeq },
        ...keptReport(),
      };
    }
    const newest = prev?.hash === undefined ? null : { seq: prev.seq, hash: prev.hash };
    return { ok: true, checked, anchor, firstBreak: null, head, newest, truncated: null, ...keptReport() };
  }
}
