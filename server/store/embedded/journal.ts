import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';

export interface JournalWarning {
  file: string;
  offset: number;
  reason: string;
}

export interface JournalOptions {
  dir: string;
  /** A segment is closed and a new one started once it grows past this size. */
  segmentBytes?: number;
  onWarning?: (w: JournalWarning) => void;
  /**
   * Group commit: a write and its sync start at most once per this many ms, and entries appended
   * meanwhile go in the next one. Each sync costs the same CPU whatever it carries (a thread-pool
   * round trip and, on a VM, the disk's doorbell through the hypervisor), so under load fewer,
   * larger batches are cheaper per entry. An entry after a quiet spell is written at once. 0 (the
   * default): each batch starts as soon as the one before it is durable.
   */
  syncIntervalMs?: number;
}

/** Where an entry lives: its segment number, byte offset and line length (newline excluded). */
export interface EntryLoc {
  segment: number;
  offset: number;
  length: number;
}

/** A place in the journal: a byte offset in a segment (where a replay starts). */
export interface JournalPlace {
  segment: number;
  offset: number;
}

/** Builds an entry from the hash of the one before it, at the moment it is written (hash chains). */
export type ChainedEntry = (prevHash: string, seq: number) => { json: string; hash: string };

interface Pending {
  entry: string | ChainedEntry;
  kept: ((line: Buffer) => void) | undefined;
  resolve: (loc: EntryLoc) => void;
  reject: (err: unknown) => void;
}

export const SEGMENT_RE = /^seg-(\d{6,})\.jsonl$/;

export function segmentName(n: number): string {
  return `seg-${String(n).padStart(6, '0')}.jsonl`;
}

/**
 * `<crc32 hex> <json>\n` at `at` in `into`, whose JSON takes `n` bytes (Buffer.byteLength): the
 * checksum tells a torn or altered line from a good one.
 */
function encodeLineAt(into: Buffer, at: number, json: string, n: number): void {
  into.write(json, at + 9, 'utf8');
  // The checksum as 8 lowercase hex digits, written byte by byte (no string for it).
  let sum = crc32(into.subarray(at + 9, at + 9 + n));
  for (let i = at + 7; i >= at; i--) {
    into[i] = HEX[sum & 0xf]!;
    sum >>>= 4;
  }
  into[at + 8] = 0x20;
  into[at + n + 9] = 0x0a;
}

/** `0`–`9`, `a`–`f` as bytes. */
const HEX = Buffer.from('0123456789abcdef', 'latin1');

/**
 * A batch up to this size is encoded into the journal's one reusable buffer; a larger one (records
 * with `capture: full`) into a buffer of its own, so one large batch does not pin megabytes.
 */
const BATCH_BUFFER_LIMIT = 1024 * 1024;

/**
 * On Linux a segment is opened for appending with O_DSYNC: each write returns once its bytes are
 * durable, as a write then an `fdatasync` did (the kernel runs the same sync for both), in one call
 * on the thread pool rather than two. Each call costs the event loop a dispatch and a wake-up, and
 * its thread a hand-off: one fewer a batch took about a quarter off the CPU a durable write costs
 * (docs/performance.md). Elsewhere the two calls stay: on macOS libuv's `fdatasync` is
 * `F_FULLFSYNC`, which also flushes the drive's cache, and an O_DSYNC write does not.
 */
const DSYNC_APPEND: number | undefined =
  process.platform === 'linux' && fsConstants.O_DSYNC !== undefined
    ? fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND | fsConstants.O_DSYNC
    : undefined;

/** readMany reads two entries in one read when at most this many bytes lie between them… */
const READ_GAP = 64 * 1024;
/** …and one read spans at most this many (a single larger entry is read whole). */
const READ_SPAN = 1024 * 1024;
/** readMany's reads under way at once (libuv's thread pool has four threads by default). */
const READ_RUNS_AT_ONCE = 8;

/** How often a batch's write first checks that its segment is still in the data dir (ms). */
const LINK_CHECK_MS = 1000;

/** The JSON of a line `encodeLineAt` wrote (its checksum is not checked: the line never left memory). */
export function lineJson(line: Buffer): string {
  return line.toString('utf8', 9, line.length - 1);
}

function decodeLine(line: Buffer): string | undefined {
  if (line.length < 10 || line[8] !== 0x20) return undefined;
  const sum = line.subarray(0, 8).toString('latin1');
  const body = line.subarray(9);
  if (crc32(body).toString(16).padStart(8, '0') !== sum) return undefined;
  return body.toString('utf8');
}

/**
 * An append-only journal of JSON entries in size-capped segment files. Appends are group-committed:
 * whatever arrives while one write+fsync is under way goes out together in the next one, so
 * concurrent requests share an fsync and durability does not cost throughput.
 */
export class Journal {
  private readonly dir: string;
  private readonly segmentBytes: number;
  private readonly onWarning: (w: JournalWarning) => void;
  private fh: fs.FileHandle | undefined;
  /** A move to the next segment under way, its last one closed and the next not open yet. */
  private rolling = false;
  /** Closed: a roll left under way must not open a segment again. */
  private closed = false;
  private segment = 0;
  private size = 0;
  private pending: Pending[] = [];
  private flushing: Promise<void> | null = null;
  private readonly syncIntervalMs: number;
  /** When the last batch's write started (performance.now()), for syncIntervalMs. */
  private lastBatchAt = Number.NEGATIVE_INFINITY;
  /** Starts a batch that is due when no append comes to start it (kick). */
  private dueTimer: NodeJS.Timeout | undefined;
  /** Starts a batch that is due at the end of this turn of the event loop (kick). */
  private dueNow: NodeJS.Immediate | undefined;
  /** Set by `refuse`: nothing more is written. */
  private refusal: Error | undefined;
  /** Why the last batch failed (a full disk, a segment removed), until one is written again. */
  failing: Error | undefined;
  /** When the segment was last found still linked in its directory (performance.now()). */
  private linkCheckedAt = Number.NEGATIVE_INFINITY;
  /**
   * Read-only handles by segment, for reading entries back: one per segment, kept as its opening: reads that start together share it (two
   * opened at once and one kept would leave the other to be closed by the GC, a descriptor leaked
   * until then for every concurrent first read: an export or a verify reads many at once).
   */
  private readonly readers = new Map<number, Promise<fs.FileHandle>>();
  /** Where each batch's lines are encoded for its write (drain runs one batch at a time). */
  private batchBuffer = Buffer.allocUnsafeSlow(64 * 1024);

  constructor(opts: JournalOptions) {
    this.dir = opts.dir;
    this.segmentBytes = opts.segmentBytes ?? 64 * 1024 * 1024;
    this.onWarning = opts.onWarning ?? (() => undefined);
    this.syncIntervalMs = opts.syncIntervalMs ?? 0;
  }

  /**
   * Opens the journal, calling `onEntry` for every intact entry in order. A torn tail (the last
   * entries of the last segment, cut short by a crash) is moved aside to `<segment>.torn-<offset>`
   * and the segment truncated; a bad entry elsewhere is skipped. Both are reported, neither stops
   * the journal from opening. `from`: only the entries from there on (what a checkpoint of the
   * entries before it does not hold); the segments before it are not read.
   */
  async open(onEntry: (value: unknown, loc: EntryLoc) => void, from?: JournalPlace): Promise<void> {
    this.closed = false;
    this.rolling = false;
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const names = (await fs.readdir(this.dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    for (const [i, name] of names.entries()) {
      const segment = Number(SEGMENT_RE.exec(name)![1]);
      if (from !== undefined && segment < from.segment) continue;
      await this.replay(
        path.join(this.dir, name),
        i === names.length - 1,
        (value, offset, length) => onEntry(value, { segment, offset, length }),
        from !== undefined && segment === from.segment ? from.offset : 0,
      );
    }
    const last = names.at(-1);
    this.segment = last ? Number(SEGMENT_RE.exec(last)![1]) : 1;
    ({ fh: this.fh, size: this.size } = await this.openSegment(this.segment));
  }

  private async replay(
    file: string,
    isLast: boolean,
    onEntry: (value: unknown, offset: number, length: number) => void,
    start = 0,
  ): Promise<void> {
    const buf = start === 0 ? await fs.readFile(file) : await readFrom(file, start);
    let offset = 0;
    let firstBadTail = -1;
    const bad: number[] = [];
    while (offset < buf.length) {
      const nl = buf.indexOf(0x0a, offset);
      const end = nl === -1 ? buf.length : nl;
      const json = nl === -1 ? undefined : decodeLine(buf.subarray(offset, end));
      if (json === undefined) {
        if (firstBadTail === -1) firstBadTail = offset;
        bad.push(offset);
      } else {
        let parsedOk = true;
        let value: unknown;
        try {
          value = JSON.parse(json);
        } catch {
          // Reported below with the checksum failures: a torn or damaged entry is set aside, not fatal.
          parsedOk = false;
        }
        if (parsedOk) {
          for (const b of bad) this.onWarning({ file, offset: start + b, reason: 'corrupt entry skipped' });
          bad.length = 0;
          firstBadTail = -1;
          onEntry(value, start + offset, end - offset);
        } else {
          if (firstBadTail === -1) firstBadTail = offset;
          bad.push(offset);
        }
      }
      offset = end + 1;
    }
    if (firstBadTail === -1) return;
    if (!isLast) {
      for (const b of bad) this.onWarning({ file, offset: start + b, reason: 'corrupt entry skipped' });
      return;
    }
    const at = start + firstBadTail;
    const aside = `${file}.torn-${at}`;
    await fs.writeFile(aside, buf.subarray(firstBadTail), { mode: 0o600 });
    await fs.truncate(file, at);
    this.onWarning({ file, offset: at, reason: `torn tail set aside in ${path.basename(aside)}` });
  }

  /**
   * On to the next segment. The number moves only once its file is open: a failed open (out of
   * descriptors, a full disk) is tried again by the next batch, for the same number, where it
   * had closed the last segment, counted on, and written to the closed handle.
   */
  private async roll(): Promise<void> {
    if (!this.rolling) {
      this.rolling = true;
      const done = this.fh;
      this.fh = undefined;
      // Every batch in it was synced before its callers heard: a failed close loses nothing.
      await done?.close().catch(() => undefined);
    }
    const next = this.segment + 1;
    ({ fh: this.fh, size: this.size } = await this.openSegment(next));
    this.segment = next;
    this.rolling = false;
  }

  /** Segment `n` opened for appending, and its size; nothing left open when either step fails. */
  private async openSegment(n: number): Promise<{ fh: fs.FileHandle; size: number }> {
    const fh = await fs.open(path.join(this.dir, segmentName(n)), DSYNC_APPEND ?? 'a', 0o600);
    try {
      return { fh, size: (await fh.stat()).size };
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  get isOpen(): boolean {
    return this.fh !== undefined;
  }

  /** The segment being written: it is never dropped. */
  get currentSegment(): number {
    return this.segment;
  }

  /** Hands each entry of a closed segment to `onEntry`, in order (retention reads what it drops). */
  async scanSegment(segment: number, onEntry: (value: unknown) => void): Promise<void> {
    if (segment >= this.segment) throw new Error('the current segment cannot be scanned');
    await this.replay(path.join(this.dir, segmentName(segment)), false, (value) => onEntry(value));
  }

  /** Deletes a whole closed segment (retention). */
  async dropSegment(segment: number): Promise<void> {
    if (segment >= this.segment) throw new Error('the current segment cannot be dropped');
    const r = this.readers.get(segment);
    if (r) {
      this.readers.delete(segment);
      await closeReader(r);
    }
    await fs.rm(path.join(this.dir, segmentName(segment)), { force: true });
  }

  /** A segment's read handle, opened at its first read (reads that start together share it). */
  private reader(segment: number): Promise<fs.FileHandle> {
    let opening = this.readers.get(segment);
    if (!opening) {
      const opened = fs.open(path.join(this.dir, segmentName(segment)), 'r');
      opening = opened;
      this.readers.set(segment, opened);
      // A failed open is not kept: the next read tries again.
      opened.catch(() => {
        if (this.readers.get(segment) === opened) this.readers.delete(segment);
      });
    }
    return opening;
  }

  /** Reads one entry back; undefined when it is not there or fails its checksum. */
  async read(loc: EntryLoc): Promise<string | undefined> {
    const fh = await this.reader(loc.segment);
    const buf = Buffer.allocUnsafe(loc.length);
    const { bytesRead } = await fh.read(buf, 0, loc.length, loc.offset);
    return bytesRead === loc.length ? decodeLine(buf) : undefined;
  }

  /**
   * Reads entries back, each as `read` would (in the order asked), with one read for each run of
   * them close together in a segment instead of one each: a scan of every record (an export, a
   * verify, a text search) paid a thread-pool round trip per record, 100 µs, minutes at a million.
   */
  async readMany(locs: readonly EntryLoc[]): Promise<(string | undefined)[]> {
    const out: (string | undefined)[] = new Array(locs.length);
    const order = locs.map((_, i) => i);
    order.sort((a, b) => locs[a]!.segment - locs[b]!.segment || locs[a]!.offset - locs[b]!.offset);
    // Runs: [from, stop) of `order` and the byte their read ends at, each one read.
    const runs: [number, number, number][] = [];
    let k = 0;
    while (k < order.length) {
      const first = locs[order[k]!]!;
      let end = first.offset + first.length;
      let stop = k + 1;
      for (; stop < order.length; stop++) {
        const next = locs[order[stop]!]!;
        const nextEnd = Math.max(end, next.offset + next.length);
        if (
          next.segment !== first.segment ||
          next.offset - end > READ_GAP ||
          nextEnd - first.offset > READ_SPAN
        )
          break;
        end = nextEnd;
      }
      runs.push([k, stop, end]);
      k = stop;
    }
    const readRun = async ([from, stop, end]: [number, number, number]): Promise<void> => {
      const first = locs[order[from]!]!;
      const fh = await this.reader(first.segment);
      const buf = Buffer.allocUnsafe(end - first.offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, first.offset);
      for (let j = from; j < stop; j++) {
        const loc = locs[order[j]!]!;
        const at = loc.offset - first.offset;
        out[order[j]!] =
          at + loc.length <= bytesRead ? decodeLine(buf.subarray(at, at + loc.length)) : undefined;
      }
    };
    // Several runs at once, as the thread pool takes them: a user's records, far apart, are a run
    // each, and one after another they cost a round trip each again.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < runs.length) await readRun(runs[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(READ_RUNS_AT_ONCE, runs.length) }, worker));
    return out;
  }

  /**
   * The hash of the last chained entry written. Chained entries are built in write order from it,
   * and a failed write leaves it as it was, so the chain only ever links entries that are on disk.
   */
  head = '';

  /**
   * The place (seq) of the last chained entry written, moved and rolled back with `head`: an entry
   * is given the next one as it is built, so a failed write leaves no gap in the numbering either
   * (a verifier takes a gap for a deleted record).
   */
  headSeq = 0;

  /**
   * Resolves with where the entry is once it is written and fsynced. `kept` is handed the line as
   * written, just before, to copy at once (the bytes are the next batch's after it returns): a
   * caller that keeps recent lines in memory keeps these bytes (outside V8's heap) rather than the
   * JSON string, which the young-generation collections would copy and promote for as long as it is
   * kept.
   */
  append(entry: string | ChainedEntry, kept?: (line: Buffer) => void): Promise<EntryLoc> {
    return new Promise<EntryLoc>((resolve, reject) => {
      this.pending.push({ entry, kept, resolve, reject });
      this.kick();
    });
  }

  /**
   * Starts a batch with what is waiting, once the one before it is durable and, with
   * syncIntervalMs, once the interval since it began has passed. A batch not due yet is started by
   * the first append after it is due: under load one comes soon, while the event loop is awake for
   * its request anyway. A timer starts it only when none comes within a further interval (a
   * record is then durable within twice the interval). On the VMs measured, each time an idle
   * event loop is woken costs about as much CPU as a batch's write: a timer at the interval's end
   * woke it for nearly every batch, which at 500 requests a second cost about 5 % of the bridge's
   * CPU and some of its p99 (docs/performance.md#group-commit-without-a-timer).
   */
  private kick(force = false): void {
    if (this.flushing || this.pending.length === 0) return;
    if (this.syncIntervalMs > 0) {
      // Closed or refused, what comes is turned away at once, with no timer left behind.
      if (!force && !this.closed && !this.refusal) {
        const wait = this.lastBatchAt + this.syncIntervalMs - performance.now();
        if (wait > 0)
          this.dueTimer ??= setTimeout(() => {
            this.dueTimer = undefined;
            this.kick(true);
          }, wait + this.syncIntervalMs);
        // Due: started once this turn's callbacks have run, not inside the caller's (a request's end).
        else
          this.dueNow ??= setImmediate(() => {
            this.dueNow = undefined;
            this.kick(true);
          });
        return;
      }
      this.lastBatchAt = performance.now();
    }
    this.cancelStarts();
    this.flushing = this.drain().finally(() => {
      this.flushing = null;
      this.kick();
    });
  }

  private cancelStarts(): void {
    if (this.dueTimer) clearTimeout(this.dueTimer);
    if (this.dueNow) clearImmediate(this.dueNow);
    this.dueTimer = undefined;
    this.dueNow = undefined;
  }

  /** Writes what is waiting as one batch. */
  private async drain(): Promise<void> {
    const batch = this.pending.splice(0);
    if (this.refusal) {
      for (const p of batch) p.reject(this.refusal);
      return;
    }
    const headBefore = this.head;
    const seqBefore = this.headSeq;
    const jsons: string[] = [];
    const sizes: number[] = [];
    let length = 0;
    for (const p of batch) {
      let json: string;
      if (typeof p.entry === 'string') json = p.entry;
      else {
        const built = p.entry(this.head, this.headSeq + 1);
        this.head = built.hash;
        this.headSeq += 1;
        json = built.json;
      }
      const n = Buffer.byteLength(json, 'utf8');
      jsons.push(json);
      sizes.push(n);
      length += n + 10;
    }
    // The batch's lines in one buffer, reused batch after batch: lines in buffers of their own
    // were slices of pool slabs that outlived a young-generation collection (the batch waits for
    // its write and sync), and V8 counts such memory as external until a full collection.
    let buf: Buffer;
    if (length > BATCH_BUFFER_LIMIT) buf = Buffer.allocUnsafeSlow(length);
    else {
      if (this.batchBuffer.length < length)
        this.batchBuffer = Buffer.allocUnsafeSlow(
          Math.min(BATCH_BUFFER_LIMIT, Math.max(length, 2 * this.batchBuffer.length)),
        );
      buf = this.batchBuffer;
    }
    let at = 0;
    for (let i = 0; i < jsons.length; i++) {
      encodeLineAt(buf, at, jsons[i]!, sizes[i]!);
      at += sizes[i]! + 10;
    }
    try {
      if (this.closed) throw new Error('journal is closed');
      if (this.rolling || (this.size > 0 && this.size + length > this.segmentBytes)) await this.roll();
      if (!this.fh) throw new Error('journal is closed');
      // Writes to a segment removed from its directory (the data dir deleted under a running
      // bridge) succeed and reach nothing: once a second at most, the segment is checked still there.
      if (performance.now() - this.linkCheckedAt > LINK_CHECK_MS) {
        const open = await this.fh.stat();
        // No link left is the sign; confirmed by its path, since some FUSE mounts report none.
        if (open.nlink === 0) {
          const named = await fs.stat(path.join(this.dir, segmentName(this.segment))).catch(() => undefined);
          if (named?.ino !== open.ino || named.dev !== open.dev)
            throw new Error('journal segment was removed from the data dir');
        }
        this.linkCheckedAt = performance.now();
      }
      // One write of the batch. A write that fails part way (a full disk) comes back as a short
      // count, not an error: the batch is not durable, and its callers must hear so.
      const { bytesWritten } = await this.fh.write(buf, 0, length);
      if (bytesWritten !== length)
        throw new Error(`journal write stopped after ${bytesWritten} of ${length} bytes`);
      // Durable already when the segment is open with O_DSYNC.
      if (DSYNC_APPEND === undefined) await this.fh.datasync();
      let offset = this.size;
      let lineAt = 0;
      for (const [i, p] of batch.entries()) {
        const lineLength = sizes[i]! + 10;
        p.kept?.(buf.subarray(lineAt, lineAt + lineLength));
        p.resolve({ segment: this.segment, offset, length: lineLength - 1 });
        offset += lineLength;
        lineAt += lineLength;
      }
      this.size += length;
      this.failing = undefined;
    } catch (err) {
      this.failing = err instanceof Error ? err : new Error(String(err));
      // A failed write may have left part of the batch on disk: it is cut off, so the next batch
      // starts on a line of its own (a torn line in the middle would take the next one with it).
      // If it cannot be, offsets continue from the real end; if even stat fails, the old size is
      // the best guess. Either way the batch's callers get the error.
      const cut = await this.fh?.truncate(this.size).then(
        () => true,
        () => false,
      );
      if (!cut) this.size = (await this.fh?.stat().catch(() => undefined))?.size ?? this.size;
      this.head = headBefore;
      this.headSeq = seqBefore;
      for (const p of batch) p.reject(err);
    }
  }

  /**
   * Writes nothing more, not even what is waiting (another process holds the directory now): what
   * is waiting and every later append fail with `reason`.
   */
  refuse(reason: Error): void {
    this.refusal = reason;
  }

  /** Waits for every accepted entry to be durable, then closes the segment. */
  async close(): Promise<void> {
    // What waits for its interval is written now.
    while (this.flushing || this.pending.length > 0) {
      this.kick(true);
      await this.flushing;
    }
    this.cancelStarts();
    this.closed = true;
    await this.fh?.close();
    this.fh = undefined;
    const readers = [...this.readers.values()];
    this.readers.clear();
    for (const r of readers) await closeReader(r);
  }
}

/** A file's bytes from `start` to its end. */
async function readFrom(file: string, start: number): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    const buf = Buffer.allocUnsafe(Math.max(0, size - start));
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, start + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/** Closes a segment's read handle once it is open; one that failed to open has nothing to close. */
async function closeReader(opening: Promise<fs.FileHandle>): Promise<void> {
  const fh = await opening.catch(() => undefined);
  await fh?.close();
}
