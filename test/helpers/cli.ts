import { spawn } from 'node:child_process';
import path from 'node:path';

/** The built CLI (`npm run build`). */
export const BIN = path.resolve('dist/aibridge.cjs');

/** Runs `aibridge <args>` to its end: its exit code and its stdout and stderr together, in order. */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      out += c;
    });
    child.on('close', (code) => resolve({ code, out }));
  });
}
