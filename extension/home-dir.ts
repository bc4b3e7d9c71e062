import os from 'node:os';

/**
 * The home directory the agents use for `env`: `HOME` on Unix (so a test or a caller can point
 * elsewhere), Node's own answer on Windows, where the agents ignore a `HOME` that Git Bash may set
 * and read `USERPROFILE`.
 */
export function homeDir(env: Record<string, string | undefined>): string {
  return (process.platform !== 'win32' && env.HOME?.trim()) || os.homedir();
}
