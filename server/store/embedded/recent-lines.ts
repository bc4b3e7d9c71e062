/**
 * The newest records' journal lines, copied into one ring of bytes allocated once, so recent pages
 * (what people look at) need no disk reads. Kept as bytes rather than strings or objects, which
 * the young-generation collections would copy and promote (docs/performance.md, "What outlived
 * each request"); and in one buffer rather than as the lines' own, because each line's buffer is
 * a slice of an 8 KiB pool slab that V8 counts as external memory until a full collection frees
 * it: holding the last 2,000 lines that way made the bridge run a full collection every few
 * thousand requests (docs/performance.md, "The answer without a stream").
 *
 * At most `entries` lines and `bytes` bytes; a line longer than a quarter of the ring is not kept
 * (it is read from the journal when asked for). Lines are kept in ascending seq order.
 */
export class RecentLines {
  private readonly ring: Buffer;
  private writeAt = 0;
  /** The kept lines, oldest first, as a ring of slots: seq, offset in `ring`, length. */
  private readonly seqs: Float64Array;
  private readonly offsets: Uint32Array;
  private readonly lengths: Uint32Array;
  private head = 0;
  private count = 0;

  constructor(
    readonly entries: number,
    bytes: number,
  ) {
    this.ring = Buffer.allocUnsafeSlow(bytes);
    this.seqs = new Float64Array(entries);
    this.offsets = new Uint32Array(entries);
    this.lengths = new Uint32Array(entries);
  }

  get size(): number {
    return this.count;
  }

  /** Keeps a copy of `line` as `seq`'s (seqs ascending); older lines make room. */
  keep(seq: number, line: Uint8Array): void {
    const len = line.length;
    if (len > this.ring.length >>> 2) return;
    let at = this.writeAt;
    if (at + len > this.ring.length) {
      // The rest of this lap is too short: the lines still there (the oldest) go, and the next
      // lap starts at 0.
      while (this.count > 0 && this.offsets[this.head]! >= at) this.evict();
      at = 0;
    }
    // The oldest lines are the next bytes of the ring: those the new line covers go.
    while (this.count > 0 && this.offsets[this.head]! < at + len && this.offsets[this.head]! >= at)
      this.evict();
    if (this.count === this.entries) this.evict();
    this.ring.set(line, at);
    this.writeAt = at + len;
    const slot = (this.head + this.count) % this.entries;
    this.seqs[slot] = seq;
    this.offsets[slot] = at;
    this.lengths[slot] = len;
    this.count++;
  }

  /** `seq`'s line decoded by `decode` while it is in the ring (the bytes are not kept); undefined when not kept. */
  read<T>(seq: number, decode: (line: Buffer) => T): T | undefined {
    // The slots hold ascending seqs from `head` around: a binary search over them (reads are
    // rare, next to the keep of every record, which a map of seqs would cost a set and a delete).
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.seqs[(this.head + mid) % this.entries]! < seq) lo = mid + 1;
      else hi = mid;
    }
    if (lo === this.count) return undefined;
    const slot = (this.head + lo) % this.entries;
    if (this.seqs[slot] !== seq) return undefined;
    const at = this.offsets[slot]!;
    return decode(this.ring.subarray(at, at + this.lengths[slot]!));
  }

  /** Forgets every line of seq ≤ `seq` (records pruned). */
  dropThrough(seq: number): void {
    while (this.count > 0 && this.seqs[this.head]! <= seq) this.evict();
  }

  private evict(): void {
    this.head = (this.head + 1) % this.entries;
    this.count--;
  }
}
