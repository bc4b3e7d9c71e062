import fs from 'node:fs/promises';
import path from 'node:path';

/** The file's text, or "" when it does not exist yet. */
export async function readTextOrEmpty(file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

/** Tells apart two writes from this process in the same millisecond. */
let writes = 0;

/**
 * Replaces `file` in one rename, so the agent that reads it never sees half a file. A new file is
 * private (0600: it sits next to the agent's credentials); an existing one keeps its mode, but
 * none of its group's or others' bits when `secret` (the text holds a key: Continue makes its
 * `config.yaml` 0644). When `previous` is not empty it is kept next to the file as `<file>.bak`,
 * private too.
 */
export async function writeFileAtomic(
  file: string,
  text: string,
  previous: string,
  secret = false,
): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  let mode = 0o600;
  try {
    mode = (await fs.stat(file)).mode & (secret ? 0o700 : 0o777);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (previous !== '') {
    const bak = `${file}.bak`;
    await fs.writeFile(bak, previous, { mode: 0o600 });
    // writeFile's mode applies to a new file only; an older backup may be readable by others.
    await fs.chmod(bak, 0o600);
  }
  const tmp = `${file}.${process.pid}.${Date.now()}.${++writes}.tmp`;
  try {
    await fs.writeFile(tmp, text, { mode });
    // writeFile's mode passes through the umask; the file must end with exactly this one.
    await fs.chmod(tmp, mode);
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}
