import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** What the lock file says about the process holding the data dir. */
interface Holder {
  pid: number;
  host: string;
  /** When the holding process started (performance.timeOrigin, ms): a reused pid is another process. */
  processStart: number;
  lockedAt: string;
}

/** Another process holds the data dir: the bridge refuses to start (exit 2). */
export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';
}

export const LOCK_FILE = 'aibridge.lock';
/** A lock whose holder cannot be checked (another host, over a shared volume) frees itself this long after its last heartbeat. */
const STALE_MS = 30_000;
const HEARTBEAT_MS = 10_000;

/**
 * One process per embedded store. Two bridges (or a bridge and `aibridge store copy`) on one data
 * dir each keep their own copy of db.json and the chain head in memory: the last writer wins,
 * users vanish and the audit chain breaks for good. Node has no flock, so the lock is a file made
 * with O_EXCL naming its holder. A holder on this host is checked directly (its pid alive, and the
 * same process that wrote it, not a pid reused after a restart, as a container's pid 1 is); one on
 * another host (a shared volume) by a heartbeat: the file's mtime is renewed every 10 s, and a lock
 * not renewed for 30 s is taken over.
 */
export class DataDirLock {
  private heartbeat: NodeJS.Timeout | undefined;

  private constructor(
    private readonly file: string,
    private readonly mine: string,
  ) {}

  static async acquire(dataDir: string): Promise<DataDirLock> {
    const file = path.join(dataDir, LOCK_FILE);
    const me: Holder = {
      pid: process.pid,
      host: os.hostname(),
      processStart: Math.round(performance.timeOrigin),
      lockedAt: new Date().toISOString(),
    };
    const mine = `${JSON.stringify(me)}\n`;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (await create(file, mine)) {
        const lock = new DataDirLock(file, mine);
        lock.beat();
        return lock;
      }
      const held = await holder(file);
      if (held === 'gone') continue;
      if (!(await stale(file, held, me))) throw lockedError(dataDir, held);
      // Taken over: removed, then made again with O_EXCL, so of two processes taking over the
      // same stale lock at once only one gets it.
      await fs.rm(file, { force: true });
    }
    throw lockedError(dataDir, await holder(file));
  }

  /** Frees the data dir (only if the file is still this process's). */
  async release(): Promise<void> {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    const now = await fs.readFile(this.file, 'utf8').catch(() => undefined);
    if (now === this.mine) await fs.rm(this.file, { force: true });
  }

  private beat(): void {
    this.heartbeat = setInterval(() => {
      const now = new Date();
      fs.utimes(this.file, now, now).catch(() => undefined);
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }
}

async function create(file: string, content: string): Promise<boolean> {
  try {
    await fs.writeFile(file, content, { flag: 'wx', mode: 0o600 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/** The lock's holder; 'gone' when the file went away meanwhile; null when it cannot be read. */
async function holder(file: string): Promise<Holder | null | 'gone'> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw err;
  }
  try {
    const h = JSON.parse(text) as Partial<Holder>;
    if (typeof h.pid === 'number' && typeof h.host === 'string' && typeof h.processStart === 'number')
      return h as Holder;
  } catch {
    // A lock file cut short by a crash while it was written: judged by its age alone.
  }
  return null;
}

async function stale(file: string, held: Holder | null, me: Holder): Promise<boolean> {
  if (held && held.host === me.host) {
    if (held.pid === me.pid) return held.processStart !== me.processStart;
    return !alive(held.pid);
  }
  const mtime = (await fs.stat(file).catch(() => undefined))?.mtimeMs ?? 0;
  return Date.now() - mtime > STALE_MS;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, as another user's process.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockedError(dataDir: string, held: Holder | null | 'gone'): DataDirLockedError {
  const who =
    held && held !== 'gone'
      ? `pid ${held.pid} on ${held.host}, since ${held.lockedAt}`
      : 'a process whose lock file cannot be read';
  return new DataDirLockedError(
    `the data dir ${dataDir} is in use by another bridge (${who}): two processes on one embedded store lose data. ` +
      'Stop it first, or give this one its own --data-dir; several replicas share a PostgreSQL store (AIBRIDGE_DATABASE_URL). ' +
      `A lock left by a process on another host frees itself ${STALE_MS / 1000} s after it stopped (or delete ${path.join(dataDir, LOCK_FILE)}).`,
  );
}
