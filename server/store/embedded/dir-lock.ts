import { readlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** What the lock file says about the process holding the data dir. */
interface Holder {
  pid: number;
  host: string;
  /** The pid namespace (`pid:[4026531836]`): pids are only comparable within one. */
  pidns?: string;
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
/** Marks a take-over in progress; a take-over takes milliseconds, so one this old was abandoned by a crash. */
const TAKEOVER = '.takeover';
const TAKEOVER_ABANDONED_MS = 10_000;
const TAKEOVER_WAIT_MS = 20;
/** Rounds of create / judge / take over before giving up (others' take-overs are waited out). */
const TAKEOVER_TRIES = 100;

/**
 * One process per embedded store. Two bridges (or a bridge and `aibridge store copy`) on one data
 * dir each keep their own copy of db.json and the chain head in memory: the last writer wins,
 * users vanish and the audit chain breaks for good. Node has no flock, so the lock is a file made
 * with O_EXCL naming its holder, its mtime renewed every 10 s by a heartbeat. A holder whose pid
 * this process can check (same host and pid namespace) and no process has is taken over at once;
 * any other once its heartbeat has stopped for 30 s (`stale`).
 */
export class DataDirLock {
  private heartbeat: NodeJS.Timeout | undefined;

  private constructor(
    private readonly file: string,
    private readonly mine: string,
  ) {}

  /** `heartbeatMs`: how often the lock is renewed (tests shorten it). */
  static async acquire(dataDir: string, heartbeatMs = HEARTBEAT_MS): Promise<DataDirLock> {
    const file = path.join(dataDir, LOCK_FILE);
    const me: Holder = {
      pid: process.pid,
      host: os.hostname(),
      ...pidNamespace(),
      processStart: Math.round(performance.timeOrigin),
      lockedAt: new Date().toISOString(),
    };
    const mine = `${JSON.stringify(me)}\n`;
    for (let attempt = 0; attempt < TAKEOVER_TRIES; attempt++) {
      if (await create(file, mine)) {
        const lock = new DataDirLock(file, mine);
        lock.beat(heartbeatMs);
        return lock;
      }
      const held = await holder(file);
      if (held.state === 'gone') continue;
      if (!(await stale(file, held.holder, me))) throw lockedError(dataDir, held.holder);
      // Take-overs are serialised by a second O_EXCL file. Without it, of two processes taking
      // over one stale lock, the slower could move aside the lock the faster had just made, and a
      // third could create its own in that gap: two holders. Under it the judged file is removed
      // only if it is still the one judged, and the only other writers (plain creates) cannot
      // replace an existing file.
      if (!(await create(`${file}${TAKEOVER}`, mine))) {
        await clearAbandonedTakeover(`${file}${TAKEOVER}`);
        await new Promise((r) => setTimeout(r, TAKEOVER_WAIT_MS));
        continue;
      }
      try {
        const now = await holder(file);
        if (now.state === 'held' && now.text === held.text) await fs.rm(file, { force: true });
      } finally {
        await fs.rm(`${file}${TAKEOVER}`, { force: true });
      }
    }
    const last = await holder(file);
    throw lockedError(dataDir, last.state === 'held' ? last.holder : null);
  }

  /** Frees the data dir (only if the file is still this process's). */
  async release(): Promise<void> {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    const now = await fs.readFile(this.file, 'utf8').catch(() => undefined);
    if (now === this.mine) await fs.rm(this.file, { force: true });
  }

  private beat(everyMs: number): void {
    this.heartbeat = setInterval(() => {
      // Only while the file is still this process's: never keeps another holder's lock fresh.
      fs.readFile(this.file, 'utf8')
        .then((now) => {
          if (now !== this.mine) {
            clearInterval(this.heartbeat);
            return;
          }
          const at = new Date();
          return fs.utimes(this.file, at, at);
        })
        .catch(() => undefined);
    }, everyMs);
    this.heartbeat.unref();
  }
}

/** A take-over marker left by a process that died mid-take-over would block every later one. */
async function clearAbandonedTakeover(marker: string): Promise<void> {
  const mtime = (await fs.stat(marker).catch(() => undefined))?.mtimeMs;
  if (mtime !== undefined && Date.now() - mtime > TAKEOVER_ABANDONED_MS) await fs.rm(marker, { force: true });
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

/** The lock file as read: its holder (null when it cannot be parsed) and its text, or gone. */
type Read = { state: 'gone' } | { state: 'held'; holder: Holder | null; text: string };

async function holder(file: string): Promise<Read> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'gone' };
    throw err;
  }
  try {
    const h = JSON.parse(text) as Partial<Holder>;
    if (typeof h.pid === 'number' && typeof h.host === 'string' && typeof h.processStart === 'number')
      return { state: 'held', holder: h as Holder, text };
  } catch {
    // A lock file cut short by a crash while it was written: judged by its age alone.
  }
  return { state: 'held', holder: null, text };
}

/**
 * Whether a lock may be taken over. A holder's pid is only checked on this host and in this pid
 * namespace (containers sharing a host name each have their own pids): a pid no process has is
 * gone at once. Otherwise (a live pid, which after a reboot may be another process; or a holder
 * whose pid cannot be checked) the lock is stale once its heartbeat has not renewed it for 30 s.
 */
async function stale(file: string, held: Holder | null, me: Holder): Promise<boolean> {
  if (held && held.host === me.host && held.pidns !== undefined && held.pidns === me.pidns) {
    if (held.pid === me.pid) return held.processStart !== me.processStart;
    if (!alive(held.pid)) return true;
  }
  const mtime = (await fs.stat(file).catch(() => undefined))?.mtimeMs ?? 0;
  return Date.now() - mtime > STALE_MS;
}

/** This process's pid namespace, where the system shows it (Linux). */
function pidNamespace(): { pidns?: string } {
  try {
    return { pidns: readlinkSync('/proc/self/ns/pid') };
  } catch {
    return {};
  }
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

function lockedError(dataDir: string, held: Holder | null): DataDirLockedError {
  const who = held
    ? `pid ${held.pid} on ${held.host}, since ${held.lockedAt}`
    : 'a process whose lock file cannot be read';
  return new DataDirLockedError(
    `the data dir ${dataDir} is in use by another bridge (${who}): two processes on one embedded store lose data. ` +
      'Stop it first, or give this one its own --data-dir; several replicas share a PostgreSQL store (AIBRIDGE_DATABASE_URL). ' +
      `A lock left by a process on another host frees itself ${STALE_MS / 1000} s after it stopped (or delete ${path.join(dataDir, LOCK_FILE)}).`,
  );
}
