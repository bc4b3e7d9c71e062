import { valueKey } from './value-key';

/** Items added before they are merged into the sorted arrays: a lookup scans at most this many. */
const TAIL_LIMIT = 4096;

/**
 * Which records hold each stored output item id (`responseItems`), for the embedded store's
 * `responseItemOwners`: 52 bits of the id (valueKey) and the record's seq, 16 bytes an item. Kept
 * sorted by key, so a lookup is a binary search whatever the store holds; a member naming ids that
 * no record has costs a few comparisons each, not a pass over every item. New items gather in a
 * short unsorted tail, merged in when it fills (one copy of the arrays per TAIL_LIMIT items).
 */
export class ItemIndex {
  private keys = new Float64Array(0);
  private seqs = new Float64Array(0);
  private tailKeys: number[] = [];
  private tailSeqs: number[] = [];

  get size(): number {
    return this.keys.length + this.tailKeys.length;
  }

  /** Records must be added in increasing seq order (as RecordIndex's). */
  add(id: string, seq: number): void {
    this.tailKeys.push(valueKey(id));
    this.tailSeqs.push(seq);
    if (this.tailKeys.length >= TAIL_LIMIT) this.merge();
  }

  /** Seqs of the records that may hold `id` (a 52-bit match: the caller checks the record), newest first. */
  seqsFor(id: string): number[] {
    const k = valueKey(id);
    const out: number[] = [];
    for (let i = this.tailKeys.length - 1; i >= 0; i--)
      if (this.tailKeys[i] === k) out.push(this.tailSeqs[i]!);
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.keys[mid]! < k) lo = mid + 1;
      else hi = mid;
    }
    // Equal keys are in seq order: newest last.
    let end = lo;
    while (end < this.keys.length && this.keys[end] === k) end++;
    for (let i = end - 1; i >= lo; i--) out.push(this.seqs[i]!);
    return out;
  }

  /** Forgets the items of records below `seq` (retention). */
  dropBelow(seq: number): void {
    let kept = 0;
    for (let i = 0; i < this.keys.length; i++) {
      if (this.seqs[i]! < seq) continue;
      this.keys[kept] = this.keys[i]!;
      this.seqs[kept] = this.seqs[i]!;
      kept++;
    }
    if (kept < this.keys.length) {
      this.keys = this.keys.slice(0, kept);
      this.seqs = this.seqs.slice(0, kept);
    }
    // The tail is oldest first.
    let gone = 0;
    while (gone < this.tailSeqs.length && this.tailSeqs[gone]! < seq) gone++;
    if (gone > 0) {
      this.tailKeys.splice(0, gone);
      this.tailSeqs.splice(0, gone);
    }
  }

  private merge(): void {
    const order = this.tailKeys.map((_, i) => i);
    // Stable by key: equal keys keep seq order.
    order.sort((a, b) => this.tailKeys[a]! - this.tailKeys[b]! || a - b);
    const n = this.keys.length + order.length;
    const keys = new Float64Array(n);
    const seqs = new Float64Array(n);
    let i = 0;
    let j = 0;
    for (let o = 0; o < n; o++) {
      const t = order[j];
      // On equal keys the sorted part's items come first: they are older.
      if (t === undefined || (i < this.keys.length && this.keys[i]! <= this.tailKeys[t]!)) {
        keys[o] = this.keys[i]!;
        seqs[o] = this.seqs[i]!;
        i++;
      } else {
        keys[o] = this.tailKeys[t]!;
        seqs[o] = this.tailSeqs[t]!;
        j++;
      }
    }
    this.keys = keys;
    this.seqs = seqs;
    this.tailKeys = [];
    this.tailSeqs = [];
  }
}
