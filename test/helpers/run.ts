import { spawn } from 'node:child_process';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Process groups of CLIs still running: killed with the test process, however it ends (Ctrl-C too). */
const running = new Set<number>();
let reaping = false;
function reapOnExit(): void {
  if (reaping) return;
  reaping = true;
  const reap = (): void => {
    for (const pid of running)
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
  };
  process.on('exit', reap);
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      reap();
      process.exit(130);
    });
}

/** Runs a real CLI with stdin closed (agents wait on an open stdin) and a hard kill after `timeoutMs`. */
export function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
  timeoutMs = 90_000,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    // In a process group of its own, so the kill reaches what it started too: Gemini CLI runs itself
    // again as a child, which held the pipes open after its parent was killed, and the run never
    // ended (the test timed out with nothing to say).
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    reapOnExit();
    if (child.pid !== undefined) running.add(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (child.pid !== undefined) running.delete(child.pid);
      resolve({ code, stdout, stderr });
    });
  });
}
