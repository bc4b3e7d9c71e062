import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import { crc32 } from 'node:zlib';
import { replaceFile } from './atomic-json-file';
import { type EntryLoc, type JournalPlace, SEGMENT_RE, segmentName } from './journal';

/**
 * A checkpoint of what the embedded store builds in memory from its journal (the record index, the
 * rollups, the recent tool results), written when the store closes, so the next start reads it and
 * replays only the entries written after it instead of every record: the start of a store of a
 * million records took 30–50 s (docs/storage.md). It is a cache, never the truth: a checkpoint
 * that does not fit the journal as it is now (a prune, a restore, a segment that changed, a file
 * from another version) is passed over and the journal replayed whole.
 *
 * The file: a first line naming the format, a line of JSON (where the journal stood), a line of
 * JSON with the layout of the rest, a line with the checksum of everything else, then the index's
 * and the rollups' columns as their bytes, then the body (v8.serialize, which keeps Maps and the objects two structures share, as the rollups'
 * buckets are).
 */
export const CHECKPOINT_FILE = 'interceptions.checkpoint';

const MAGIC = 'aibridge-checkpoint 1';

/** Where the journal stood when the checkpoint was written. */
export interface CheckpointHeader {
  /** Every segment then, oldest first, with its size in bytes. */
  segments: [number, number][];
  /** The last entry's place and the checksum its line starts with; null with none. */
  last: { loc: EntryLoc; sum: string } | null;
  /** The highest record the pruned rollups held (pruned-rollups.ts): a prune since then moves it. */
  prunedThrough: number;
}

/** A column of numbers, written as its bytes and read straight into an array of its own. */
export type Column = Float64Array | Uint32Array;

/** What the file's third line says of the rest: the columns' kinds and lengths, then the body's. */
interface Layout {
  endianness: string;
  columns: { kind: 'f64' | 'u32'; length: number }[];
  body: number;
}

/**
 * Writes the checkpoint atomically (a crash leaves the old file or the new one). The columns go out
 * as they are in memory, not copied: the body's serialisation is the only copy made.
 */
export async function writeCheckpoint(
  dataDir: string,
  header: CheckpointHeader,
  columns: readonly Column[],
  body: unknown,
): Promise<void> {
  const bytes = v8.serialize(body);
  const raw = columns.map((c) => new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
  const layout: Layout = {
    endianness: os.endianness(),
    columns: columns.map((c) => ({ kind: c instanceof Float64Array ? 'f64' : 'u32', length: c.length })),
    body: bytes.length,
  };
  const head = Buffer.from(`${MAGIC}\n${JSON.stringify(header)}\n${JSON.stringify(layout)}\n`);
  // One checksum over all of it, the header's lines included: a place changed there would have
  // the replay start elsewhere.
  let sum = crc32(head);
  for (const r of raw) sum = crc32(r, sum);
  sum = crc32(bytes, sum);
  const sumLine = Buffer.from(`${sum.toString(16).padStart(8, '0')}\n`);
  await replaceFile(path.join(dataDir, CHECKPOINT_FILE), [head, sumLine, ...raw, bytes]);
}

/** Removes the checkpoint (a prune made it stale); a missing one is fine. */
export async function dropCheckpoint(dataDir: string): Promise<void> {
  await fs.rm(path.join(dataDir, CHECKPOINT_FILE), { force: true });
}

export type CheckpointRead =
  | { ok: true; header: CheckpointHeader; columns: Column[]; body: unknown; from: JournalPlace }
  | { ok: false; reason: string | null };

/** The most a checkpoint's three first lines may take (a header lists every segment). */
const HEAD_LIMIT = 16 * 1024 * 1024;

/**
 * The checkpoint and where the journal's replay goes on from, if it fits the journal in
 * `journalDir` and the pruned rollups' `prunedThrough`; otherwise why not (null: there is none).
 * Each column is read into an array of `capacity(length, its position)` elements, its first
 * `length` filled.
 */
export async function readCheckpoint(
  dataDir: string,
  journalDir: string,
  prunedThrough: number,
  capacity: (length: number, column: number) => number,
): Promise<CheckpointRead> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(path.join(dataDir, CHECKPOINT_FILE), 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ok: false, reason: null };
    return { ok: false, reason: `not readable (${(err as Error).message})` };
  }
  try {
    const size = (await fh.stat()).size;
    const first = Buffer.allocUnsafe(Math.min(size, HEAD_LIMIT));
    const { bytesRead } = await fh.read(first, 0, first.length, 0);
    const lines: string[] = [];
    let at = 0;
    let headEnd = 0;
    for (let i = 0; i < 4; i++) {
      const nl = first.subarray(0, bytesRead).indexOf(0x0a, at);
      if (nl === -1) return { ok: false, reason: 'cut short' };
      lines.push(first.toString('utf8', at, nl));
      at = nl + 1;
      if (i === 2) headEnd = at;
    }
    if (lines[0] !== MAGIC) return { ok: false, reason: 'in a format this version does not read' };
    let header: CheckpointHeader;
    let layout: Layout;
    try {
      header = JSON.parse(lines[1]!) as CheckpointHeader;
      layout = JSON.parse(lines[2]!) as Layout;
    } catch {
      return { ok: false, reason: 'its header is not JSON' };
    }
    if (layout.endianness !== os.endianness())
      return { ok: false, reason: 'written on another kind of machine' };
    const count = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0;
    if (
      !Array.isArray(header.segments) ||
      !Array.isArray(layout.columns) ||
      !count(layout.body) ||
      !layout.columns.every((c) => (c.kind === 'f64' || c.kind === 'u32') && count(c.length))
    )
      return { ok: false, reason: 'its header is not whole' };
    const bytesOf = (c: Layout['columns'][number]): number => c.length * (c.kind === 'f64' ? 8 : 4);
    // Checked before anything is allocated for them: the parts must fill the file exactly.
    if (at + layout.columns.reduce((n, c) => n + bytesOf(c), 0) + layout.body !== size)
      return { ok: false, reason: 'cut short' };
    if (header.prunedThrough !== prunedThrough)
      return { ok: false, reason: 'records were pruned after it was written' };
    const misfit = await journalMisfit(journalDir, header);
    if (misfit !== undefined) return { ok: false, reason: misfit };
    const misplaced = tailMisfit(header.segments, header.last?.loc ?? null);
    if (misplaced !== undefined) return { ok: false, reason: misplaced };
    let sum = crc32(first.subarray(0, headEnd));
    let pos = at;
    const columns: Column[] = [];
    for (const [i, c] of layout.columns.entries()) {
      const room = capacity(c.length, i);
      const col = c.kind === 'f64' ? new Float64Array(room) : new Uint32Array(room);
      const into = new Uint8Array(col.buffer, 0, bytesOf(c));
      await readFully(fh, into, pos);
      sum = crc32(into, sum);
      pos += into.length;
      columns.push(col);
    }
    const body = Buffer.allocUnsafe(layout.body);
    await readFully(fh, body, pos);
    sum = crc32(body, sum);
    if (sum.toString(16).padStart(8, '0') !== lines[3])
      return { ok: false, reason: 'damaged (its checksum does not match)' };
    let value: unknown;
    try {
      value = v8.deserialize(body);
    } catch (err) {
      return { ok: false, reason: `not readable by this Node.js (${(err as Error).message})` };
    }
    const last = header.segments.at(-1);
    // A journal that had no segment yet starts at the first one's beginning.
    const from = last ? { segment: last[0], offset: last[1] } : { segment: 0, offset: 0 };
    return { ok: true, header, columns, body: value, from };
  } finally {
    await fh.close();
  }
}

async function readFully(fh: fs.FileHandle, into: Uint8Array, position: number): Promise<void> {
  let got = 0;
  while (got < into.length) {
    const { bytesRead } = await fh.read(into, got, into.length - got, position + got);
    if (bytesRead === 0) throw new Error('the checkpoint ended early');
    got += bytesRead;
  }
}

/**
 * Why `segments` (number, size) do not end where the `last` entry does, or undefined: each segment
 * before the last entry's holds whatever it holds, the last entry's ends with it, and any after it
 * is empty. A checkpoint is written only so (a replay goes on from the last segment's end), and
 * one that says otherwise is not read.
 */
export function tailMisfit(segments: readonly [number, number][], last: EntryLoc | null): string | undefined {
  if (segments.length === 0) return last === null ? undefined : 'its header is not whole';
  for (const [segment, size] of segments) {
    const end =
      last === null || segment > last.segment
        ? 0
        : segment === last.segment
          ? last.offset + last.length + 1
          : size;
    if (size !== end) return 'its header does not hold together';
  }
  return undefined;
}

/** The journal's segments, oldest first, each with its size in bytes; none when there is no journal. */
export async function segmentSizes(journalDir: string): Promise<[number, number][]> {
  const names = (await fs.readdir(journalDir).catch(() => [] as string[]))
    .filter((n) => SEGMENT_RE.test(n))
    .sort();
  const out: [number, number][] = [];
  for (const n of names)
    out.push([Number(SEGMENT_RE.exec(n)![1]), (await fs.stat(path.join(journalDir, n))).size]);
  return out;
}

/**
 * Why the journal does not start as it stood at the checkpoint, or undefined when it does: the
 * same segments from the same first one, each the same size but the last (which may have grown
 * since), and the last entry's line where it was, with its checksum.
 */
async function journalMisfit(journalDir: string, header: CheckpointHeader): Promise<string | undefined> {
  if (!Array.isArray(header.segments) || !('last' in header)) return 'its header is not whole';
  const now = await segmentSizes(journalDir);
  const sizes = new Map(now);
  if (header.segments.length > 0 && now[0]?.[0] !== header.segments[0]![0])
    return 'the journal does not start where it did';
  for (const [i, [segment, size]] of header.segments.entries()) {
    const found = sizes.get(segment);
    if (found === undefined) return `journal segment ${segment} is gone`;
    const isLast = i === header.segments.length - 1;
    if (isLast ? found < size : found !== size) return `journal segment ${segment} changed size`;
  }
  if (header.last === null) return undefined;
  const { loc, sum } = header.last;
  if ((await lineSumAt(journalDir, loc)) !== sum) return 'the last record it holds is not in the journal';
  return undefined;
}

/**
 * The checksum a journal line starts with (its first 8 characters), if a whole line ends at `loc`;
 * undefined when the segment is gone or holds no whole, intact line there.
 */
export async function lineSumAt(journalDir: string, loc: EntryLoc): Promise<string | undefined> {
  const fh = await fs.open(path.join(journalDir, segmentName(loc.segment)), 'r').catch(() => undefined);
  if (fh === undefined) return undefined;
  try {
    // The whole line and its newline: a line damaged since would be set aside by a replay.
    const line = Buffer.alloc(loc.length + 1);
    const { bytesRead } = await fh.read(line, 0, line.length, loc.offset);
    if (bytesRead !== line.length || line.length < 10 || line[8] !== 0x20 || line[loc.length] !== 0x0a)
      return undefined;
    const sum = line.toString('latin1', 0, 8);
    if (crc32(line.subarray(9, loc.length)).toString(16).padStart(8, '0') !== sum) return undefined;
    return sum;
  } finally {
    await fh.close();
  }
}
