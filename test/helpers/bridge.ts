import fs from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { type Bridge, type BuildOptions, buildApp } from '../../server/app';
import { bootstrapAdmin } from '../../server/bootstrap';
import { loadConfig } from '../../server/config';
import type { CreatedKey, User } from '../../shared/identity';
import type { Interception, Page } from '../../shared/interception';
import { AnthropicMock, UPSTREAM_KEY } from './anthropic-mock';
import { eventually } from './eventually';
import { OPENAI_UPSTREAM_KEY } from './openai-mock';
import { tempDir } from './temp-dirs';

export interface TestBridge {
  url: string;
  adminKey: string;
  dataDir: string;
  bridge: Bridge;
  /** Every log line the bridge wrote. */
  logs: string[];
  api<T = unknown>(
    method: string,
    route: string,
    key: string | null,
    body?: unknown,
  ): Promise<{ status: number; body: T; headers: Headers }>;
  /** Creates a user and a key for them through the admin API. */
  addUser(
    email: string,
    opts?: { role?: 'admin' | 'member'; team?: string },
  ): Promise<{ user: User; key: string; keyId: string }>;
  /** Waits until `n` interceptions are stored (records are written after the response ends). */
  interceptions(n: number, key?: string): Promise<Interception[]>;
  close(): Promise<void>;
}

export { tempDir } from './temp-dirs';

/**
 * The real app, on a real socket on port 0, with a fresh data dir, in front of `upstreamUrl` for
 * Anthropic (OpenAI's upstream comes from `env.AIBRIDGE_OPENAI_BASE_URL`).
 */
export async function startBridge(
  upstreamUrl: string,
  env: Record<string, string> = {},
  dataDir?: string,
  build: Omit<BuildOptions, 'logStream'> = {},
  /** Where it listens, as AIBRIDGE_HOST says (`localhost`: every address `build.lookupLocalhost` names). */
  host = '127.0.0.1',
): Promise<TestBridge> {
  const dir = dataDir ?? (await tempDir());
  const config = loadConfig(
    { port: '0', 'data-dir': dir },
    {
      AIBRIDGE_ANTHROPIC_BASE_URL: upstreamUrl,
      AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY,
      AIBRIDGE_OPENAI_API_KEY: OPENAI_UPSTREAM_KEY,
      AIBRIDGE_LOG_LEVEL: 'info',
      // Suites send many bad keys from 127.0.0.1 on purpose; the throttle has its own test.
      AIBRIDGE_AUTH_FAILURES_PER_MINUTE: '0',
      ...env,
    },
  );
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString());
      cb();
    },
  });
  const bridge = await buildApp(config, { ...build, logStream });
  const created = await bootstrapAdmin(bridge.identity, dir, config.adminEmail);
  const adminKey = created?.key ?? (await fs.readFile(path.join(dir, 'admin.key'), 'utf8')).trim();
  await bridge.listen(host, 0);
  const url = `http://127.0.0.1:${(bridge.app.server.address() as AddressInfo).port}`;

  const api: TestBridge['api'] = async (method, route, key, body) => {
    const headers: Record<string, string> = {};
    if (key) headers.authorization = `Bearer ${key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(url + route, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as never, headers: res.headers };
  };

  const tb: TestBridge = {
    url,
    adminKey,
    dataDir: dir,
    bridge,
    logs,
    api,
    async addUser(email, opts = {}) {
      const u = await api<User>('POST', '/api/v1/users', adminKey, {
        email,
        role: opts.role ?? 'member',
        ...(opts.team ? { team: opts.team } : {}),
      });
      if (u.status !== 201) throw new Error(`create user failed: ${JSON.stringify(u.body)}`);
      const k = await api<CreatedKey>(
        'POST',
        `/api/v1/users/${encodeURIComponent(email)}/keys`,
        adminKey,
        {},
      );
      if (k.status !== 201) throw new Error(`create key failed: ${JSON.stringify(k.body)}`);
      return { user: u.body, key: k.body.key, keyId: k.body.id };
    },
    async interceptions(n, key = adminKey) {
      const list = async (): Promise<Interception[]> => {
        // Records are listed once durable: wait for the ones already handed to the store.
        await bridge.recorder.drain();
        return (await api<Page<Interception>>('GET', `/api/v1/interceptions?limit=500`, key)).body.items;
      };
      // Fewer than `n` after the wait is the caller's to assert on: return what is there.
      return eventually(async () => {
        const items = await list();
        return items.length >= n ? items : undefined;
      }).catch(list);
    },
    async close() {
      await bridge.close();
    },
  };
  return tb;
}

/** A bridge in front of its own Anthropic upstream mock, and the one call that stops both. */
export interface MockedBridge {
  tb: TestBridge;
  upstream: AnthropicMock;
  /** Closes the bridge first (it may still be talking to the mock), then the mock. */
  close(): Promise<void>;
}

/**
 * The usual suite set-up: an Anthropic mock on port 0 and `startBridge` in front of it. A bridge
 * that fails to start stops the mock, so a failing `before` leaves no listener behind.
 */
export async function startMockedBridge(
  env: Record<string, string> = {},
  build: Omit<BuildOptions, 'logStream'> = {},
): Promise<MockedBridge> {
  const upstream = await new AnthropicMock().start();
  let tb: TestBridge;
  try {
    tb = await startBridge(upstream.url, env, undefined, build);
  } catch (err) {
    await upstream.stop();
    throw err;
  }
  return {
    tb,
    upstream,
    async close() {
      try {
        await tb.close();
      } finally {
        await upstream.stop();
      }
    },
  };
}
