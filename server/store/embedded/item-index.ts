import { countBelow } from './count-below';
import { valueKey } from './value-key';

/** Items added before they are sorted into a run: a lookup scans at most this many. */
const TAIL_LIMIT = 4096;

/** Items sorted by key (then seq), with their records' seqs. */
interface Run {
  keys: Float64Array;
  seqs: Float64Array;
}

/** An ItemIndex as a checkpoint keeps it. */
export interface ItemIndexState {
  runs: Run[];
  tailKeys: number[];
  tailSeqs: number[];
}

/**
 * Which records hold each stored output item id (`responseItems`), for the embedded store's
 * `responseItemOwners`: 52 bits of the id (valueKey) and the record's seq, 16 bytes an item. Kept
 * in sorted runs, so a lookup is a binary search per run whatever the store holds; a member naming
 * ids that no record has costs a few comparisons each, not a pass over every item.
 *
 * New items gather in a short unsorted tail. A full tail becomes a run of its own, and a run is
 * merged with the one before it while it is at least half that one's size: runs shrink
 * geometrically from the oldest, so there are O(log n) of them and each item is copied O(log n)
 * times, however many there are (a start-up rebuilding millions of items sorts them once, in
 * effect, not once per tail).
 */
export class ItemIndex {
  /** Oldest first: every seq of a run is below every seq of the runs after it. */
  private runs: Run[] = [];
  private tailKeys: number[] = [];
  private tailSeqs: number[] = [];

  get size(): number {
    let n = this.tailKeys.length;
    for (const r of this.runs) n += r.keys.length;
    return n;
  }

  state(): ItemIndexState {
    return { runs: this.runs, tailKeys: this.tailKeys, tailSeqs: this.tailSeqs };
  }

  /** This (empty) index as `state` was; its runs copied out of what held them. */
  restore(state: ItemIndexState): void {
    if (state.tailKeys.length !== state.tailSeqs.length)
      throw new Error('checkpoint items do not fit the index');
    this.runs = state.runs.map((r) => {
      if (r.keys.length !== r.seqs.length) throw new Error('checkpoint items do not fit the index');
      return { keys: r.keys.slice(), seqs: r.seqs.slice() };
    });
    this.tailKeys = [...state.tailKeys];
    this.tailSeqs = [...state.tailSeqs];
  }

  /** Records must be added in increasing seq order (as RecordIndex's). */
  add(id: string, seq: number): void {
    this.tailKeys.push(valueKey(id));
    this.tailSeqs.push(seq);
    if (this.tailKeys.length >= TAIL_LIMIT) this.seal();
  }

  /** Seqs of the records that may hold `id` (a 52-bit match: the caller checks the record), newest first. */
  seqsFor(id: string): number[] {
    const k = valueKey(id);
    const out: number[] = [];
    for (let i = this.tailKeys.length - 1; i >= 0; i--)
      if (this.tailKeys[i] === k) out.push(this.tailSeqs[i]!);
    for (let r = this.runs.length - 1; r >= 0; r--) {
      const { keys, seqs } = this.runs[r]!;
      const lo = countBelow(keys, k);
      // Equal keys are in seq order: newest last.
      let end = lo;
      while (end < keys.length && keys[end] === k) end++;
      for (let i = end - 1; i >= lo; i--) out.push(seqs[i]!);
    }
    return out;
  }

  /** Forgets the items of records below `seq` (retention). */
  dropBelow(seq: number): void {
    const runs: Run[] = [];
    for (const run of this.runs) {
      let kept = 0;
      for (let i = 0; i < run.keys.length; i++) if (run.seqs[i]! >= seq) kept++;
      if (kept === run.keys.length) runs.push(run);
      else if (kept > 0) {
        const keys = new Float64Array(kept);
        const seqs = new Float64Array(kept);
        let o = 0;
        for (let i = 0; i < run.keys.length; i++) {
          if (run.seqs[i]! < seq) continue;
          keys[o] = run.keys[i]!;
          seqs[o++] = run.seqs[i]!;
        }
        runs.push({ keys, seqs });
      }
    }
    this.runs = runs;
    // The tail is oldest first.
    let gone = 0;
    while (gone < this.tailSeqs.length && this.tailSeqs[gone]! < seq) gone++;
    if (gone > 0) {
      this.tailKeys.splice(0, gone);
      this.tailSeqs.splice(0, gone);
    }
  }

  /** The tail as a sorted run, merged into those before it while they are not twice its size. */
  private seal(): void {
    const order = this.tailKeys.map((_, i) => i);
    // Equal keys keep seq order.
    order.sort((a, b) => this.tailKeys[a]! - this.tailKeys[b]! || a - b);
    let run: Run = {
      keys: Float64Array.from(order, (i) => this.tailKeys[i]!),
      seqs: Float64Array.from(order, (i) => this.tailSeqs[i]!),
    };
    this.tailKeys = [];
    this.tailSeqs = [];
    while (this.runs.length > 0 && this.runs.at(-1)!.keys.length <= 2 * run.keys.length)
      run = merged(this.runs.pop()!, run);
    this.runs.push(run);
  }
}

/** Two runs as one, `older`'s items first among equal keys (so equal keys stay in seq order). */
function merged(older: Run, newer: Run): Run {
  const n = older.keys.length + newer.keys.length;
  const keys = new Float64Array(n);
  const seqs = new Float64Array(n);
  let i = 0;
  let j = 0;
  for (let o = 0; o < n; o++) {
    if (j >= newer.keys.length || (i < older.keys.length && older.keys[i]! <= newer.keys[j]!)) {
      keys[o] = older.keys[i]!;
      seqs[o] = older.seqs[i++]!;
    } else {
      keys[o] = newer.keys[j]!;
      seqs[o] = newer.seqs[j++]!;
    }
  }
  return { keys, seqs };
}
