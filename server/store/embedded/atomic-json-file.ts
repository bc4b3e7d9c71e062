import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Adapter } from 'lowdb';
import { syncDir } from './sync-dir';

/**
 * A lowdb adapter that replaces the file atomically and durably: write a temporary file, fsync it,
 * rename it over the old one, fsync the directory. A crash leaves either the old or the new file,
 * never a torn one. Writes are serialised so a slow write cannot be overtaken by a later one.
 */
export class AtomicJsonFile<T> implements Adapter<T> {
  private chain: Promise<void> = Promise.resolve();
  /** The write waiting for the one under way to finish, which later writes join. */
  private queued: { data: T; done: Promise<void> } | undefined;

  constructor(private readonly file: string) {}

  async read(): Promise<T | null> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      // Named, since "Unexpected end of JSON input" alone does not say which file to restore.
      throw new Error(
        `${this.file} is not valid JSON (${(err as Error).message}): restore it from a backup`,
        {
          cause: err,
        },
      );
    }
  }

  /**
   * Writes that arrive while an earlier one is under way join the one queued after it, which
   * serialises the newest data when its turn comes: a burst of changes costs two file writes, not
   * one serialisation and one fsync each on the event loop (docs/performance.md#small-side-files).
   * Each caller's promise settles once a write holding its data (or newer) is durable.
   */
  write(data: T): Promise<void> {
    if (this.queued) {
      this.queued.data = data;
      return this.queued.done;
    }
    const slot: { data: T; done: Promise<void> } = { data, done: Promise.resolve() };
    slot.done = this.chain.then(() => {
      if (this.queued === slot) this.queued = undefined;
      return this.replace(JSON.stringify(slot.data, null, 1));
    });
    this.queued = slot;
    // The chain only orders writes: the callers get this write's failure through `done`.
    this.chain = slot.done.catch(() => undefined);
    return slot.done;
  }

  private replace(text: string): Promise<void> {
    return replaceFile(this.file, text);
  }
}

/**
 * Replaces `file` with `text` (or its parts, in order) atomically and durably: a temporary file, fsync, rename, fsync of the
 * directory. A crash leaves either the old or the new file.
 */
export async function replaceFile(file: string, text: string | readonly Uint8Array[]): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    // Parts one after the other: each writeFile goes on from where the last one stopped.
    if (typeof text === 'string') await fh.writeFile(text);
    else for (const part of text) await fh.writeFile(part);
    await fh.datasync();
  } catch (err) {
    // Half a file on a full disk is space the journal's next write needs.
    await fh.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await fh.close();
  await fs.rename(tmp, file);
  // Renamed, the file holds the new text: a failure past here (the directory's sync) is not
  // reported as "not written", which would have its caller take back a change the next start
  // reads. A disk that fails this fails the audit journal's writes too, and /readyz says so.
  await syncDir(path.dirname(file)).catch(() => undefined);
}
