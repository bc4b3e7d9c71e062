import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../helpers/loopback';

const run = promisify(execFile);

/** Where scripts/e2e-setup.sh installs code-server (docs/extension.md#testing). */
export const CODE_SERVER_BIN = path.resolve('.vscode-e2e/node_modules/.bin/code-server');

/**
 * A newer code-server (VS Code >= 1.104) on its own Node 22, where scripts/e2e-next-setup.sh
 * installs it (docs/extension.md#testing).
 */
export const CODE_SERVER_NEXT_BIN = path.resolve('.vscode-e2e-next/code-server');

export interface CodeServer {
  url: string;
  dir: string;
  /** The folder the workbench opened. */
  workspace: string;
  /** Everything code-server printed, for failure messages. */
  output: string[];
  stop(): Promise<void>;
}

function common(dir: string): string[] {
  return [
    '--config',
    path.join(dir, 'config.yaml'),
    '--user-data-dir',
    path.join(dir, 'user'),
    '--extensions-dir',
    path.join(dir, 'ext'),
  ];
}

/** Installs a .vsix the way a user would (`code-server --install-extension`). */
export async function installExtension(dir: string, vsix: string, bin = CODE_SERVER_BIN): Promise<string> {
  const { stdout, stderr } = await run(bin, [...common(dir), '--install-extension', vsix], {
    timeout: 120_000,
  });
  return stdout + stderr;
}

/** Writes the user settings the test relies on (readable terminal rows, no start page). */
export async function writeSettings(dir: string, settings: Record<string, unknown>): Promise<void> {
  const file = path.join(dir, 'user', 'User', 'settings.json');
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, JSON.stringify(settings, null, 2));
}

/**
 * Starts code-server on a free loopback port in its own process group (it spawns an extension
 * host and terminals: stopping kills the whole group), and waits until it answers.
 */
export async function startCodeServer(
  dir: string,
  workspace: string,
  env: Record<string, string | undefined>,
  bin = CODE_SERVER_BIN,
): Promise<CodeServer> {
  const port = await freePort();
  const output: string[] = [];
  const child: ChildProcess = spawn(
    bin,
    [
      ...common(dir),
      '--auth',
      'none',
      '--bind-addr',
      `127.0.0.1:${port}`,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      workspace,
    ],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  child.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 5000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`code-server exited early:\n${output.join('')}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`code-server did not start within 60s:\n${output.join('')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, dir, workspace, output, stop };
}
