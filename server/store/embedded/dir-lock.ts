import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
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
/**
 * Marks a take-over in progress: a directory holding one file named by its holder's random token.
 * A take-over takes milliseconds, so a token this old was abandoned by a crash.
 */
const TAKEOVER = '.takeover';
const TAKEOVER_ABANDONED_MS = 10_000;
const TAKEOVER_WAIT_MS = 20;
/**
 * How long a starter waits out others' take-overs before giving up: past the abandonment age (with
 * a margin), so a marker left by a crash is cleared instead of failing the restart with the name of
 * a dead holder. Contention with a live holder still fails at once: this only bounds the waiting.
 */
const TAKEOVER_PATIENCE_MS = TAKEOVER_ABANDONED_MS + 5_000;

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

  /**
   * `heartbeatMs`: how often the lock is renewed (tests shorten it). `onLost`: called once when a
   * heartbeat finds the lock file gone or another process's (deleted by hand, or taken over from a
   * holder on another host that stopped beating): from then on two processes hold the store.
   */
  static async acquire(
    dataDir: string,
    heartbeatMs = HEARTBEAT_MS,
    onLost?: (reason: string) => void,
  ): Promise<DataDirLock> {
    const file = path.join(dataDir, LOCK_FILE);
    const me: Holder = {
      pid: process.pid,
      host: os.hostname(),
      ...pidNamespace(),
      processStart: Math.round(performance.timeOrigin),
      lockedAt: new Date().toISOString(),
    };
    const mine = `${JSON.stringify(me)}\n`;
    const marker = `${file}${TAKEOVER}`;
    const giveUpAt = Date.now() + TAKEOVER_PATIENCE_MS;
    do {
      if (await create(file, mine)) {
        const lock = new DataDirLock(file, mine);
        lock.beat(heartbeatMs, onLost);
        await clearAbandonedStaging(dataDir, path.basename(marker));
        return lock;
      }
      const held = await holder(file);
      if (held.state === 'gone') continue;
      if (!(await stale(file, held.holder, me))) throw lockedError(dataDir, held.holder);
      // Take-overs are serialised by a take-over marker (takeMarker). Without it, of two processes
      // taking over one stale lock, the slower could move aside the lock the faster had just made,
      // and a third could create its own in that gap: two holders. Under it the judged file is
      // removed only if it is still the one judged, and the only other writers (plain creates)
      // cannot replace an existing file. A marker already held is waited out (TAKEOVER_PATIENCE_MS).
      const token = await takeMarker(marker, mine);
      if (token === undefined) {
        await clearAbandonedTakeover(marker);
        await new Promise((r) => setTimeout(r, TAKEOVER_WAIT_MS));
        continue;
      }
      try {
        const now = await holder(file);
        if (now.state === 'held' && now.text === held.text) await fs.rm(file, { force: true });
      } finally {
        await dropMarker(marker, token);
      }
    } while (Date.now() < giveUpAt);
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

  private beat(everyMs: number, onLost?: (reason: string) => void): void {
    const lost = (reason: string): void => {
      clearInterval(this.heartbeat);
      this.heartbeat = undefined;
      onLost?.(reason);
    };
    this.heartbeat = setInterval(() => {
      // Only while the file is still this process's: never keeps another holder's lock fresh.
      fs.readFile(this.file, 'utf8')
        .then((now) => {
          if (this.heartbeat === undefined) return;
          if (now !== this.mine) return lost(`${LOCK_FILE} now names another process`);
          const at = new Date();
          return fs.utimes(this.file, at, at);
        })
        .catch((err: unknown) => {
          if (this.heartbeat !== undefined && (err as NodeJS.ErrnoException).code === 'ENOENT')
            lost(`${LOCK_FILE} was removed`);
        });
    }, everyMs);
    this.heartbeat.unref();
  }
}

/*
 * The take-over marker is removed by whoever judged it abandoned, not only by its holder, so it
 * must be removable only as the very marker judged: removing it by path could remove the one
 * another process made a moment after the judged one went, letting a third in beside it. So it is
 * a directory that appears complete (renamed into place, holding one file named by its holder's
 * random token) and is removed token first: a file removed by its token name is exactly the
 * marker judged or the holder's own, and the directory is then removed only if empty (rmdir), so
 * never while another marker is in it. A rename lands only where no marker is or an emptied one.
 */

/** Errors of a rename onto a held marker: a non-empty directory (EPERM on Windows), a file made by an older version. */
const MARKER_BUSY = new Set(['EEXIST', 'ENOTEMPTY', 'ENOTDIR', 'EISDIR', 'EPERM']);

/** Takes the take-over marker: its token, or undefined while another process holds it. */
async function takeMarker(marker: string, content: string): Promise<string | undefined> {
  const token = randomBytes(16).toString('hex');
  const staging = `${marker}.${token}`;
  await fs.mkdir(staging, { mode: 0o700 });
  try {
    await fs.writeFile(path.join(staging, token), content, { mode: 0o600 });
    await fs.rename(staging, marker);
    return token;
  } catch (err) {
    await fs.rm(staging, { recursive: true, force: true });
    if (MARKER_BUSY.has((err as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw err;
  }
}

/** Gives the marker back: this process's token only, then the directory if nothing else is in it. */
async function dropMarker(marker: string, token: string): Promise<void> {
  await fs.unlink(path.join(marker, token)).catch(() => undefined);
  await fs.rmdir(marker).catch(() => undefined);
}

/**
 * A take-over marker left by a process that died mid-take-over would block every later one: its
 * token, once older than TAKEOVER_ABANDONED_MS, is removed by name (a token that has gone in the
 * meantime is not another's), then the directory if it is empty.
 */
async function clearAbandonedTakeover(marker: string): Promise<void> {
  let tokens: string[];
  try {
    tokens = await fs.readdir(marker);
  } catch (err) {
    // A file: the marker of an older version. unlink removes no directory, so never a current marker.
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR' && (await abandoned(marker)))
      await fs.unlink(marker).catch(() => undefined);
    return;
  }
  for (const token of tokens)
    if (await abandoned(path.join(marker, token)))
      await fs.unlink(path.join(marker, token)).catch(() => undefined);
  // Empty (now, or left so by a holder that died between its token and the directory): holds nothing.
  await fs.rmdir(marker).catch(() => undefined);
}

/**
 * A starter that crashed between making its staging directory and renaming it into place left
 * `aibridge.lock.takeover.<token>` behind. It holds nothing (the marker is only ever the renamed
 * one), so the holder removes those old enough to be no live starter's (a take-over takes ms).
 */
async function clearAbandonedStaging(dataDir: string, markerName: string): Promise<void> {
  const names = await fs.readdir(dataDir).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(`${markerName}.`)) continue;
    const staging = path.join(dataDir, name);
    if (await abandoned(staging))
      await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function abandoned(file: string): Promise<boolean> {
  const mtime = (await fs.stat(file).catch(() => undefined))?.mtimeMs;
  return mtime !== undefined && Date.now() - mtime > TAKEOVER_ABANDONED_MS;
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
    // Alive and the very process that took the lock (not a reused pid): never taken over, however
    // old its heartbeat. A holder stopped for a while (SIGSTOP, a debugger, a VM paused) resumed
    // beside the process that had taken its lock, and both wrote the store.
    // Another start time is a reused pid, or a clock misread: judged by its heartbeat, as before.
    const started = startedAt(held.pid);
    if (started !== undefined && Math.abs(started - held.processStart) <= START_TOLERANCE_MS) return false;
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

/**
 * How far a process's start read from /proc may be from the one its lock names: Node's clock
 * starts a few hundred ms after the exec, the boot time is in whole seconds, and the wall clock
 * drifts from it over a long uptime. A reused pid's process started far later.
 */
const START_TOLERANCE_MS = 30_000;

/** /proc states (procStat's first field) of a process that has exited: zombie, dead. */
const ZOMBIE = new Set(['Z', 'X', 'x']);

/** A file of /proc, or undefined where the system does not show it. */
function readProc(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * A process's fields from `/proc/<pid>/stat`, counted from its state (field 3): the command name
 * before it (field 2) may hold spaces and parentheses.
 */
function procStat(pid: number): string[] | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * When a process started (ms since the epoch), from /proc: its start in clock ticks after boot
 * (USER_HZ, 100 on Linux) and the boot time. Undefined where the system does not show it.
 */
function startedAt(pid: number): number | undefined {
  const ticks = Number(procStat(pid)?.[19]);
  const btime = Number(/^btime (\d+)$/m.exec(readProc('/proc/stat') ?? '')?.[1]);
  return Number.isFinite(ticks) && Number.isFinite(btime) ? btime * 1000 + ticks * 10 : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie (exited, not yet reaped by its parent) takes signals but holds nothing.
    return !ZOMBIE.has(procStat(pid)?.[0] ?? '');
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
      `A lock left by a process on another host frees itself ${STALE_MS / 1000} s after it stopped (or delete ${path.join(dataDir, LOCK_FILE)}, only once no bridge runs on it).`,
  );
}
