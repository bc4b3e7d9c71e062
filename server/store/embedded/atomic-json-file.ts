import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Adapter } from 'lowdb';

/**
 * A lowdb adapter that replaces the file atomically and durably: write a temporary file, fsync it,
 * rename it over the old one, fsync the directory. A crash leaves either the old or the new file,
 * never a torn one. Writes are serialised so a slow write cannot be overtaken by a later one.
 */
export class AtomicJsonFile<T> implements Adapter<T> {
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly file: string) {}

  async read(): Promise<T | null> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return JSON.parse(text) as T;
  }

  write(data: T): Promise<void> {
    const text = JSON.stringify(data, null, 1);
    const next = this.chain.then(() => this.replace(text));
    // The chain only orders writes: the caller gets this write's failure through `next`.
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async replace(text: string): Promise<void> {
    const tmp = `${this.file}.tmp`;
    const fh = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
    try {
      await fh.writeFile(text);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, this.file);
    const dir = await fs.open(path.dirname(this.file), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
