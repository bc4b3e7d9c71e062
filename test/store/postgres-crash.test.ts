import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import type { CreatedKey, User } from '../../shared/identity';
import type { Interception, Page } from '../../shared/interception';
import { AnthropicMock, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { tempDir } from '../helpers/bridge';
import { testPostgres } from '../helpers/postgres';

const BIN = path.resolve('dist/aibridge.cjs');

interface Proc {
  child: ChildProcess;
  url: string;
  lines: string[];
  exited: Promise<void>;
}

async function serve(dataDir: string, env: Record<string, string>): Promise<Proc> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--data-dir', dataDir], {
    env: { PATH: process.env.PATH, AIBRIDGE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let buf = '';
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line: ${lines.join('\n')}`)), 20_000);
    child.stdout!.on('data', (c) => {
      buf += c;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      lines.push(...parts);
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(parts.join('\n'));
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${lines.join('\n')}`)));
  });
  return { child, url, lines, exited };
}

async function api<T>(base: string, method: string, route: string, key: string, body?: unknown): Promise<T> {
  const res = await fetch(base + route, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return (await res.json()) as T;
}

describe('the PostgreSQL store after kill -9', function () {
  this.timeout(60_000);

  it('keeps every record it acknowledged (PostgreSQL acks once stored), logged in the order requests ended, and the chain verifies', async () => {
    const upstream = await new AnthropicMock().start();
    const dir = await tempDir();
    const env = {
      AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('crash'),
      AIBRIDGE_ANTHROPIC_BASE_URL: upstream.url,
      AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY,
    };
    let proc = await serve(dir, env);
    try {
      const adminKey = /Admin key[^\n]*\n(aib_\S+)/.exec(proc.lines.join('\n'))?.[1];
      assert.ok(adminKey, 'the first start prints the admin key');
      await api<User>(proc.url, 'POST', '/api/v1/users', adminKey, { email: 'dev@example.com' });
      const { key } = await api<CreatedKey>(
        proc.url,
        'POST',
        '/api/v1/users/dev%40example.com/keys',
        adminKey,
        {},
      );
      const served: string[] = [];
      for (let i = 0; i < 40; i++) {
        const res = await fetch(`${proc.url}/anthropic/v1/messages`, {
          method: 'POST',
          headers: {
            'x-api-key': key,
            'anthropic-version': '2023-06-01',
            'content-type': 'application/json',
          },
          body: JSON.stringify({
            model: 'claude-sonnet-4-6',
            max_tokens: 20,
            messages: [{ role: 'user', content: `q${i}` }],
          }),
        });
        await res.text();
        assert.equal(res.status, 200);
        served.push(res.headers.get('x-aibridge-interception-id')!);
      }
      proc.child.kill('SIGKILL');
      await proc.exited;
      const logged = proc.lines
        .filter((l) => l.includes('"msg":"interception"'))
        .map((l) => (JSON.parse(l) as { interceptionId: string }).interceptionId);
      // The line is written as the response ends; a kill in that instant may beat the last one.
      assert.deepEqual(logged, served.slice(0, logged.length), 'log lines in the order requests ended');
      assert.ok(logged.length >= served.length - 1, `${logged.length} of ${served.length} requests logged`);

      proc = await serve(dir, env);
      const stored = await api<Page<Interception>>(
        proc.url,
        'GET',
        '/api/v1/interceptions?limit=500',
        adminKey,
      );
      const ids = stored.items.map((r) => r.id).reverse();
      // PostgreSQL acks `stored`: a response ends once its record is committed, so every request
      // served before the kill is there. (Its log line may not be: the kill can beat the log's write.)
      assert.deepEqual(ids, served, 'every record acknowledged before the kill survives it');
      const verify = await api<{ ok: boolean; checked: number }>(
        proc.url,
        'GET',
        '/api/v1/audit/verify',
        adminKey,
      );
      assert.deepEqual({ ok: verify.ok, checked: verify.checked }, { ok: true, checked: ids.length });
    } finally {
      proc.child.kill('SIGKILL');
      await proc.exited;
      await upstream.stop();
    }
  });
});
