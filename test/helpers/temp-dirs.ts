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

/**
 * Removes every directory made so far; a test that removed its own is passed over. Processes
 * still running from one go first: agent CLIs leave daemons behind (codex starts its app-server
 * from its home, detached, ~150 MB each), which would otherwise outlive the run.
 */
export function removeTempDirs(): void {
  killProcessesIn([...made]);
  for (const dir of made) {
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // Something still writing into it (a child killed a moment ago): the next run is not hurt.
    }
    made.delete(dir);
  }
}

/** SIGKILLs every process whose executable, working directory or command line is under `dirs` (Linux's /proc; elsewhere nothing). */
export function killProcessesIn(dirs: readonly string[]): number {
  if (dirs.length === 0) return 0;
  let pids: string[];
  try {
    pids = fs
      .readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid && Number(p) !== process.ppid);
  } catch {
    return 0;
  }
  const under = (p: string): boolean => dirs.some((d) => p === d || p.startsWith(`${d}/`));
  let killed = 0;
  for (const pid of pids) {
    const facts: string[] = [];
    for (const link of ['exe', 'cwd']) {
      try {
        facts.push(fs.readlinkSync(`/proc/${pid}/${link}`).replace(/ \(deleted\)$/, ''));
      } catch {
        // Gone, or not ours to read.
      }
    }
    try {
      facts.push(...fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'));
    } catch {
      // Gone meanwhile.
    }
    if (!facts.some(under)) continue;
    try {
      process.kill(Number(pid), 'SIGKILL');
      killed += 1;
    } catch {
      // Exited meanwhile.
    }
  }
  return killed;
}
