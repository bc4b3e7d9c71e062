import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Every directory the suite makes under the system's temporary directory, removed when the run
 * ends (test/helpers/root-hooks.ts): a suite run several times a day must not leave hundreds of
 * data directories, agent homes and key files behind each time.
 */
const made = new Set<string>();

export async function tempDir(prefix = 'aibridge-test-'): Promise<string> {
  return track(await fs.promises.mkdtemp(path.join(os.tmpdir(), prefix)));
}

export function tempDirSync(prefix = 'aibridge-test-'): string {
  return track(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
}

function track(dir: string): string {
  made.add(dir);
  return dir;
}

/** Removes every directory made so far; a test that removed its own is passed over. */
export function removeTempDirs(): void {
  for (const dir of made) {
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // Something still writing into it (a child killed a moment ago): the next run is not hurt.
    }
    made.delete(dir);
  }
}

/** How many directories are waiting to be removed (for the helper's own test). */
export function tempDirsPending(): number {
  return made.size;
}
