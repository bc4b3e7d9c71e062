import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { AnthropicMock, UPSTREAM_KEY } from './anthropic-mock';

export interface SoakSample {
  requests: number;
  rssMb: number;
  heapMb: number;
  fds: number;
  sockets: number;
}

export interface SoakResult {
  samples: SoakSample[];
  statuses: Record<string, number>;
}

async function processStats(pid: number): Promise<{ fds: number; sockets: number }> {
  const dir = `/proc/${pid}/fd`;
  const fds = await fs.readdir(dir);
  let sockets = 0;
  for (const fd of fds) {
    const target = await fs.readlink(path.join(dir, fd)).catch(() => '');
    if (target.startsWith('socket:')) sockets++;
  }
  return { fds: fds.length, sockets };
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/** A bridge process (the built `dist/aibridge.cjs`) on 127.0.0.1, port 0, in front of `upstreamUrl`. */
export async function spawnBridge(
  upstreamUrl: string,
  dataDir: string,
  env: Record<string, string> = {},
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    ['dist/aibridge.cjs', 'serve', '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir],
    {
      env: {
        PATH: process.env.PATH,
        AIBRIDGE_ANTHROPIC_BASE_URL: upstreamUrl,
        AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY,
        AIBRIDGE_LOG_LEVEL: 'error',
        AIBRIDGE_BREAKER_THRESHOLD: '0',
        AIBRIDGE_BURST_RPM: '0',
        AIBRIDGE_METRICS_TOKEN: 'soak',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', (c) => {
        out += c;
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on('exit', (code) => reject(new Error(`bridge exited ${code}`)));
    });
    return { child, url };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

/** Creates `count` members through the admin API and returns a bridge key for each. */
export async function createMembers(
  url: string,
  dataDir: string,
  prefix: string,
  count: number,
): Promise<string[]> {
  const adminKey = (await fs.readFile(path.join(dataDir, 'admin.key'), 'utf8')).trim();
  const admin = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };
  const keys: string[] = [];
  for (let u = 0; u < count; u++) {
    const email = `${prefix}${u}@example.com`;
    await fetch(`${url}/api/v1/users`, { method: 'POST', headers: admin, body: JSON.stringify({ email }) });
    const k = (await (
      await fetch(`${url}/api/v1/users/${email}/keys`, { method: 'POST', headers: admin, body: '{}' })
    ).json()) as {
      key: string;
    };
    keys.push(k.key);
  }
  return keys;
}

/**
 * Mixed traffic through a real bridge process: streams and whole responses, clients that leave
 * mid-stream, upstream errors and mid-stream failures, several users at once. Samples the bridge's
 * memory, file descriptors and sockets every `sampleEvery` requests, with the bridge idle.
 */
export async function soak(opts: {
  requests: number;
  concurrency: number;
  sampleEvery: number;
  dataDir: string;
  log?: (s: SoakSample) => void;
}): Promise<SoakResult> {
  const mock = await new AnthropicMock().start();
  let child: ChildProcess | undefined;
  try {
    const bridge = await spawnBridge(mock.url, opts.dataDir);
    child = bridge.child;
    const url = bridge.url;
    const keys = await createMembers(url, opts.dataDir, 'soak', 5);

    const statuses: Record<string, number> = {};
    const samples: SoakSample[] = [];
    const sample = async (requests: number): Promise<void> => {
      const text = await (
        await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer soak' } })
      ).text();
      const { fds, sockets } = await processStats(child!.pid!);
      const s = {
        requests,
        rssMb: Math.round(metric(text, 'aibridge_process_resident_memory_bytes') / 1e5) / 10,
        heapMb: Math.round(metric(text, 'aibridge_nodejs_heap_size_used_bytes') / 1e5) / 10,
        fds,
        sockets,
      };
      samples.push(s);
      opts.log?.(s);
    };

    let sent = 0;
    const one = async (i: number): Promise<void> => {
      const kind = i % 10;
      const key = keys[i % keys.length]!;
      if (kind === 7) mock.next({ kind: 'mid-stream-error' });
      if (kind === 8)
        mock.next({ kind: 'error', status: 529, type: 'overloaded_error', message: 'Overloaded' });
      const stream = kind % 2 === 0 || kind === 7;
      const abort = new AbortController();
      try {
        const res = await fetch(`${url}/anthropic/v1/messages`, {
          method: 'POST',
          headers: {
            'x-api-key': key,
            'content-type': 'application/json',
            'anthropic-version': '2023-06-01',
          },
          body: JSON.stringify({
            model: 'claude-sonnet-4-5',
            max_tokens: 32,
            stream,
            messages: [{ role: 'user', content: `soak ${i}` }],
          }),
          signal: abort.signal,
        });
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (kind === 9 && res.body) {
          // A client that leaves after the first bytes.
          const reader = res.body.getReader();
          await reader.read();
          abort.abort();
        } else await res.arrayBuffer();
      } catch (err) {
        if ((err as Error).name !== 'AbortError') statuses.error = (statuses.error ?? 0) + 1;
      }
    };
    while (sent < opts.requests) {
      const batch = Math.min(opts.sampleEvery, opts.requests - sent);
      let next = 0;
      await Promise.all(
        Array.from({ length: opts.concurrency }, async () => {
          while (next < batch) {
            const i = sent + next++;
            await one(i);
          }
        }),
      );
      sent += batch;
      mock.clear();
      await new Promise((r) => setTimeout(r, 200));
      await sample(sent);
    }
    return { samples, statuses };
  } finally {
    child?.kill('SIGKILL');
    await mock.stop();
  }
}
