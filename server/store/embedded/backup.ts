import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CHECKPOINT_FILE } from './checkpoint';
import { LOCK_FILE } from './dir-lock';
import { SEGMENT_RE } from './journal';
import { FILE as PRUNED_ROLLUPS } from './pruned-rollups';
import { syncDir } from './sync-dir';

export interface BackupResult {
  files: number;
  bytes: number;
}

/** Bytes read back from a segment's end at a time, looking for its last whole line. */
const TAIL_CHUNK = 64 * 1024;

/**
 * Copies an embedded store's data dir to `to` (which must be empty or absent) while a bridge may be
 * serving from it, so that the copy opens and verifies as the store was at one moment.
 *
 * The order is the point. A chain head (`live.json`, `db.json`) is written only once the records it
 * names are durable, and a journal only grows, so heads copied before the journals never point past
 * what the copied journals hold; copied the other way round, a head newer than its journal reads as
 * records cut off the tail, which `audit verify` reports as a truncation. Each journal segment is
 * copied up to its last whole line: the copy has no torn entry to set aside. The lock and
 * half-written temporary files stay behind.
 */
export async function backupDataDir(from: string, to: string): Promise<BackupResult> {
  // Real paths: a target inside the data dir through a symlink (`/var/lib/aibridge` linking to
  // `/srv/aibridge`, the backup to `/srv/aibridge/backups/…`) copied the dir into itself, level
  // after level, until the disk the journal writes to was full.
  const source = await fs.realpath(path.resolve(from));
  const target = await realPathOf(path.resolve(to));
  const inside = path.relative(source, target);
  if (inside === '' || (!inside.startsWith('..') && !path.isAbsolute(inside)))
    throw new BackupError(`${to} is inside the data dir ${from}: back it up somewhere else`);
  await fs.mkdir(target, { recursive: true, mode: 0o700 });
  if ((await fs.readdir(target)).length > 0)
    throw new BackupError(`${to} is not empty: back up into a new directory`);
  const result: BackupResult = { files: 0, bytes: 0 };
  const entries = await fs.readdir(source, { withFileTypes: true });
  // Files first (the heads among them), then the journals' directories, then the pruned records'
  // rollups: a prune between the journals' copy and theirs leaves records in both, which the copy
  // counts once (records up to what the rollups hold are not rolled up again); the other way round,
  // records pruned meanwhile were in neither.
  for (const e of entries)
    if (e.isFile() && kept(e.name) && e.name !== PRUNED_ROLLUPS)
      await copyWhole(path.join(source, e.name), path.join(target, e.name), result);
  for (const e of entries)
    if (e.isDirectory()) await copyDir(path.join(source, e.name), path.join(target, e.name), result);
  // Created by a prune while the rest was copied, perhaps.
  if (await exists(path.join(source, PRUNED_ROLLUPS)))
    await copyWhole(path.join(source, PRUNED_ROLLUPS), path.join(target, PRUNED_ROLLUPS), result);
  await syncDir(target);
  return result;
}

/** `p` with its deepest existing ancestor's symlinks resolved (the rest does not exist yet). */
async function realPathOf(p: string): Promise<string> {
  const rest: string[] = [];
  let at = p;
  for (;;) {
    try {
      return path.join(await fs.realpath(at), ...rest);
    } catch (err) {
      const parent = path.dirname(at);
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === at) throw err;
      rest.unshift(path.basename(at));
      at = parent;
    }
  }
}

/** A refusal of the backup's arguments, in words for the admin. */
export class BackupError extends Error {}

function kept(name: string): boolean {
  // The checkpoint is a cache of what the journal holds: the copy's first start builds it anew.
  return name !== LOCK_FILE && name !== CHECKPOINT_FILE && !name.endsWith('.tmp') && !name.includes('.torn-');
}

async function copyDir(from: string, to: string, result: BackupResult): Promise<void> {
  await fs.mkdir(to, { mode: 0o700 });
  const entries = (await fs.readdir(from, { withFileTypes: true })).sort((a, b) =>
    a.name.localeCompare(b.name),
  );
  for (const e of entries) {
    const src = path.join(from, e.name);
    const dst = path.join(to, e.name);
    if (e.isDirectory()) await copyDir(src, dst, result);
    else if (e.isFile() && kept(e.name)) {
      if (SEGMENT_RE.test(e.name)) await copyLines(src, dst, result);
      else await copyWhole(src, dst, result);
    }
  }
  await syncDir(to);
}

async function copyWhole(from: string, to: string, result: BackupResult): Promise<void> {
  // One read of the file as it is now: an atomic replace (rename) of it meanwhile leaves this copy whole.
  const data = await fs.readFile(from);
  await writeSynced(to, data);
  result.files++;
  result.bytes += data.length;
}

/** A journal segment up to its last newline: a line still being written stays behind. */
async function copyLines(from: string, to: string, result: BackupResult): Promise<void> {
  const fh = await fs.open(from, 'r');
  let end: number;
  try {
    end = await lastLineEnd(fh, (await fh.stat()).size);
  } finally {
    await fh.close();
  }
  const out = await fs.open(to, 'wx', 0o600);
  try {
    if (end > 0)
      await pipeline(
        createReadStream(from, { start: 0, end: end - 1 }),
        createWriteStream('', { fd: out.fd, autoClose: false }),
      );
    await out.sync();
  } finally {
    await out.close();
  }
  result.files++;
  result.bytes += end;
}

/** The offset just past the last `\n` in the file's first `size` bytes; 0 when it has none. */
async function lastLineEnd(fh: fs.FileHandle, size: number): Promise<number> {
  const buf = Buffer.allocUnsafe(TAIL_CHUNK);
  for (let hi = size; hi > 0; ) {
    const lo = Math.max(0, hi - TAIL_CHUNK);
    const { bytesRead } = await fh.read(buf, 0, hi - lo, lo);
    const at = buf.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (at !== -1) return lo + at + 1;
    hi = lo;
  }
  return 0;
}

async function writeSynced(file: string, data: Buffer): Promise<void> {
  // 0600 whatever the source's mode: the dir holds the key-hash secret and the first admin's key.
  const fh = await fs.open(file, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}
