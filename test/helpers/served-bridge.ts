import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { UPSTREAM_KEY } from './anthropic-mock';

const BIN = path.resolve('dist/aibridge.cjs');

/** `aibridge serve` run as users run it: the built CLI in a child process of its own. */
export interface Served {
  child: ChildProcess;
  url: string;
  adminKey: string;
  /** Its stdout and stderr so far, in order. */
  out: () => string;
}

/**
 * Starts the built bridge on port 0 over `dataDir`, the Anthropic instance at `upstream`; resolves
 * once it listens. `fds`: at most that many open file descriptors (`ulimit -n`).
 */
export async function serve(
  dataDir: string,
  upstream: string,
  env: Record<string, string> = {},
  { fds }: { fds?: number } = {},
): Promise<Served> {
  const args = [BIN, 'serve', '--port', '0', '--data-dir', dataDir];
  const [command, argv] =
    fds === undefined
      ? [process.execPath, args]
      : ['bash', ['-c', `ulimit -n ${fds} && exec "$0" "$@"`, process.execPath, ...args]];
  const child = spawn(command, argv, {
    env: {
      PATH: process.env.PATH,
      AIBRIDGE_ANTHROPIC_BASE_URL: upstream,
      AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY,
      AIBRIDGE_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (c) => {
    out += c;
  });
  child.stderr!.on('data', (c) => {
    out += c;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`bridge did not start: ${out}`)), 15_000);
    child.stdout!.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    child.on('exit', (code) => reject(new Error(`bridge exited ${code}: ${out}`)));
  });
  const adminKey = (await fs.readFile(path.join(dataDir, 'admin.key'), 'utf8')).trim();
  return { child, url, adminKey, out: () => out };
}

/** Resolves with the child's exit code once it has exited. */
export const exited = (c: ChildProcess): Promise<number | null> =>
  c.exitCode !== null ? Promise.resolve(c.exitCode) : new Promise((r) => c.on('exit', (code) => r(code)));

/** A member `email` (d@example.com unless given) and a bridge key of theirs. */
export async function devKey(s: Served, email = 'd@example.com'): Promise<string> {
  const admin = { authorization: `Bearer ${s.adminKey}`, 'content-type': 'application/json' };
  await fetch(`${s.url}/api/v1/users`, {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ email }),
  });
  const k = (await (
    await fetch(`${s.url}/api/v1/users/${email}/keys`, { method: 'POST', headers: admin, body: '{}' })
  ).json()) as { key: string };
  return k.key;
}
