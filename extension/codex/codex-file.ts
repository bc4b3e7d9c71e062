import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Where Codex reads its config: `$CODEX_HOME/config.toml`, by default `~/.codex/config.toml`. */
export function codexConfigPath(env: Record<string, string | undefined> = process.env): string {
  const home = env.CODEX_HOME?.trim() || path.join(os.homedir(), '.codex');
  return path.join(home, 'config.toml');
}

/** The file's text, or "" when it does not exist yet. */
export async function readCodexConfig(file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

/**
 * Replaces the file in one rename, so Codex never reads half a config; the previous version is kept
 * next to it as config.toml.bak.
 */
export async function writeCodexConfig(file: string, text: string, previous: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  if (previous !== '') await fs.writeFile(`${file}.bak`, previous, { mode: 0o600 });
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, text, { mode: 0o600 });
  await fs.rename(tmp, file);
}
