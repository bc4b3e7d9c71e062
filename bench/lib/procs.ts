import { type ChildProcess, fork, type SpawnOptions, spawn } from 'node:child_process';
import fs from 'node:fs';

/** A child process the bench started: it is killed on every way out of the bench. */
export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  /** The last lines it printed, for the error message when it dies. */
  readonly tail: string[];
}

const children = new Set<Child>();
const cleanups: (() => void)[] = [];
const TAIL_LINES = 40;

function track(name: string, proc: ChildProcess): Child {
  const child: Child = { name, proc, tail: [] };
  const keep = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      child.tail.push(line);
      if (child.tail.length > TAIL_LINES) child.tail.shift();
    }
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  proc.on('exit', () => children.delete(child));
  children.add(child);
  return child;
}

/** Starts a program; its output is kept (last lines only), never left to fill a pipe. */
export function start(name: string, command: string, args: string[], opts: SpawnOptions = {}): Child {
  return track(name, spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }));
}

/** Starts one of the bench's own TypeScript workers with an IPC channel (it exits when we do). */
export function startWorker(name: string, file: string, nodeArgs: string[] = [], args: string[] = []): Child {
  return track(
    name,
    fork(file, args, {
      execArgv: [...nodeArgs, '--import', 'tsx'],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    }),
  );
}

/** Resolves with the first output line that matches; rejects if the child exits or time runs out. */
export function waitForLine(child: Child, re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString('utf8');
      const m = re.exec(buf);
      if (m) finish(() => resolve(m));
    };
    const onExit = (code: number | null, signal: string | null): void =>
      finish(() =>
        reject(
          new Error(
            `${child.name} exited (${signal ?? code}) before it was ready:\n${child.tail.join('\n')}`,
          ),
        ),
      );
    const timer = setTimeout(
      () => finish(() => reject(new Error(`${child.name} not ready after ${timeoutMs} ms:\n${buf}`))),
      timeoutMs,
    );
    const finish = (then: () => void): void => {
      clearTimeout(timer);
      child.proc.stdout?.off('data', onData);
      child.proc.stderr?.off('data', onData);
      child.proc.off('exit', onExit);
      then();
    };
    child.proc.stdout?.on('data', onData);
    child.proc.stderr?.on('data', onData);
    child.proc.on('exit', onExit);
  });
}

let nextCallId = 1;

/** Sends a request over a worker's IPC channel and resolves with its reply (`{ id, result | error }`). */
export function call<T>(
  child: Child,
  msg: Record<string, unknown>,
  onProgress?: (m: Record<string, unknown>) => void,
  timeoutMs = 120_000,
): Promise<T> {
  const id = nextCallId++;
  return new Promise<T>((resolve, reject) => {
    const onMessage = (m: unknown): void => {
      const r = m as { id?: number; result?: T; error?: string; progress?: Record<string, unknown> };
      if (r.id !== id) return;
      if (r.progress) {
        onProgress?.(r.progress);
        return;
      }
      done();
      if (r.error !== undefined) reject(new Error(`${child.name}: ${r.error}`));
      else resolve(r.result as T);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      done();
      reject(new Error(`${child.name} exited (${signal ?? code}):\n${child.tail.join('\n')}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${child.name}: no answer to ${String(msg.kind)} in ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      child.proc.off('message', onMessage);
      child.proc.off('exit', onExit);
    };
    child.proc.on('message', onMessage);
    child.proc.on('exit', onExit);
    child.proc.send({ id, ...msg });
  });
}

/** Worker side of `call`: answers each request with the handler's result or error. */
export function serveCalls(
  handler: (msg: Record<string, unknown>, progress: (p: Record<string, unknown>) => void) => Promise<unknown>,
): void {
  process.on('message', (m: unknown) => {
    const msg = m as Record<string, unknown> & { id: number };
    const progress = (p: Record<string, unknown>): void => {
      process.send?.({ id: msg.id, progress: p });
    };
    handler(msg, progress).then(
      (result) => process.send?.({ id: msg.id, result }),
      (err: unknown) => process.send?.({ id: msg.id, error: (err as Error).stack ?? String(err) }),
    );
  });
  // The parent went away (finished, crashed or killed): never outlive it.
  process.on('disconnect', () => process.exit(0));
}

/** Asks a child to stop (SIGTERM), then kills it if it has not gone within `graceMs`. */
export async function stop(child: Child, graceMs = 5_000): Promise<void> {
  const p = child.proc;
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Registers something to undo on the way out (temporary directories). Runs synchronously. */
export function onCleanup(fn: () => void): void {
  cleanups.push(fn);
}

let cleanedUp = false;

/** Kills every child still running and runs the cleanups. Safe to call more than once. */
export function cleanupNow(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const c of children) {
    if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  }
  for (const fn of cleanups.reverse()) {
    try {
      fn();
    } catch {
      // best effort: the rest must still run
    }
  }
}

/** Makes sure no child outlives the bench, whichever way it ends. */
export function installExitHandlers(): void {
  process.on('exit', cleanupNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping\n`);
      cleanupNow();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: ${err.stack ?? String(err)}\n`);
    cleanupNow();
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`bench: ${(err as Error)?.stack ?? String(err)}\n`);
    cleanupNow();
    process.exit(1);
  });
}

/** Resident set size of a process, in bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** CPU time (user + system) a process has used so far, in ms (Linux /proc). */
export function cpuMs(pid: number, mainThread = false): number {
  // A process's figure counts every thread: for Node, V8's GC and compiler threads and libuv's pool
  // too, which a `--cpu-prof` profile (the main thread only) never shows.
  const { user, system } = statTimes(mainThread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`);
  return user + system;
}

/** A process's CPU ms split into user and system (kernel) time, every thread. */
export function cpuSplitMs(pid: number): { user: number; system: number } {
  return statTimes(`/proc/${pid}/stat`);
}

/** The user and system time, in ms, a /proc stat file reports (100 ticks a second). */
function statTimes(file: string): { user: number; system: number } {
  const stat = fs.readFileSync(file, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: (Number(rest[11]) * 1000) / 100, system: (Number(rest[12]) * 1000) / 100 };
}

/**
 * CPU ms of a process's main thread (`main`) and of its other threads (`others`: V8's GC and
 * compiler helpers, libuv's pool that runs fsync and file writes; Node names them all `node`):
 * where a process's CPU goes that a main-thread profile cannot show.
 */
export function threadCpuMs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = tid === String(pid) ? 'main' : 'others';
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(rest[11]) + Number(rest[12])) * 1000) / 100;
      out.set(name, (out.get(name) ?? 0) + ms);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}

/**
 * CPU time a process's main thread has used so far, in ms with ns resolution
 * (/proc/PID/task/PID/schedstat): for an idle process, where a few ms a second would round to 0 in
 * `cpuMs`'s 10 ms clock ticks. (Summed over threads it is not reliable: a thread that ends takes
 * its time with it.)
 */
export function mainThreadCpuMsFine(pid: number): number {
  return Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
}

export interface CpuTicks {
  steal: number;
  total: number;
  /** Share of CPU time stolen by the hypervisor between `since` and this reading, in %. */
  percentSince(since: CpuTicks): number;
}

/** Machine-wide CPU ticks (Linux /proc/stat): steal shows how much a shared host took from us. */
export function stealTicks(): CpuTicks {
  const first = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = first.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const total = f.slice(0, 8).reduce((s, x) => s + (Number.isFinite(x) ? x : 0), 0);
  const steal = f[7] ?? 0;
  return {
    steal,
    total,
    percentSince(since) {
      const dt = total - since.total;
      return dt > 0 ? (100 * (steal - since.steal)) / dt : 0;
    },
  };
}
