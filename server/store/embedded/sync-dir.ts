import fs from 'node:fs/promises';

/** Makes a directory's entries durable (a file created or renamed in it survives a crash). */
export async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
