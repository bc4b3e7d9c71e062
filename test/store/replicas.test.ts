import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';
import type { CreatedKey, User } from '../../shared/identity';
import type { Interception, Page } from '../../shared/interception';
import { AnthropicMock, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { type Asked, askMessages } from '../helpers/ask';
import { tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { liveClient } from '../helpers/live-client';
import { testPostgres } from '../helpers/postgres';

const BIN = path.resolve('dist/aibridge.cjs');

interface Replica {
  child: ChildProcess;
  url: string;
  output: () => string;
}

/** One `aibridge serve` process, as an admin would run it, on port 0. */
async function replica(dataDir: string, env: Record<string, string>): Promise<Replica> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--data-dir', dataDir], {
    env: {
      PATH: process.env.PATH,
      AIBRIDGE_LOG_LEVEL: 'warn',
      AIBRIDGE_AUTH_FAILURES_PER_MINUTE: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr!.on('data', (c) => {
    out += c;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line: ${out}`)), 20_000);
    child.stdout!.on('data', (c) => {
      out += c;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  return { child, url, output: () => out };
}

async function api<T>(
  base: string,
  method: string,
  route: string,
  key: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await fetch(base + route, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

function ask(base: string, key: string): Promise<Asked> {
  return askMessages(base, key, { max_tokens: 100, stream: true, prompt: 'hi from a replica' });
}

describe('two replicas on one PostgreSQL database', function () {
  this.timeout(90_000);
  let upstream: AnthropicMock;
  let a: Replica;
  let b: Replica;
  let adminKey: string;
  let dbUrl: string;

  before(async () => {
    upstream = await new AnthropicMock().start();
    dbUrl = await (await testPostgres()).createDatabase('replicas');
    const env = {
      AIBRIDGE_DATABASE_URL: dbUrl,
      AIBRIDGE_ANTHROPIC_BASE_URL: upstream.url,
      AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY,
      // Replicas check keys with one secret.
      AIBRIDGE_KEY_HASH_SECRET: randomBytes(32).toString('base64url'),
    };
    const dirs = [await tempDir(), await tempDir()];
    // Started together: both migrate under the advisory lock (one does the work), and one of them
    // creates the admin.
    [a, b] = (await Promise.all(dirs.map((d) => replica(d, env)))) as [Replica, Replica];
    const keys = await Promise.all(
      dirs.map(async (d) => (await fs.readFile(path.join(d, 'admin.key'), 'utf8').catch(() => '')).trim()),
    );
    assert.equal(
      keys.filter(Boolean).length,
      1,
      `exactly one replica bootstraps the admin: ${a.output()} ${b.output()}`,
    );
    adminKey = keys.find(Boolean)!;
  });

  after(async () => {
    for (const r of [a, b]) {
      if (!r) continue;
      r.child.kill('SIGTERM');
      await new Promise((res) => (r.child.exitCode !== null ? res(undefined) : r.child.once('exit', res)));
    }
    await upstream?.stop();
  });

  it('share users, keys and records; a key revoked on one is refused by the other within a second', async () => {
    const u = await api<User>(a.url, 'POST', '/api/v1/users', adminKey, { email: 'dev@example.com' });
    assert.equal(u.status, 201);
    const k = await api<CreatedKey>(b.url, 'POST', '/api/v1/users/dev%40example.com/keys', adminKey, {});
    assert.equal(k.status, 201, 'the user created on A exists on B');
    assert.equal((await ask(a.url, k.body.key)).status, 200);
    assert.equal((await ask(b.url, k.body.key)).status, 200);
    const listed = await eventually(
      async () => {
        const r = await api<Page<Interception>>(b.url, 'GET', '/api/v1/interceptions?limit=10', adminKey);
        return r.body.items.length >= 2 ? r.body.items : undefined;
      },
      { what: 'both records', timeoutMs: 10_000, intervalMs: 50 },
    );
    assert.deepEqual(
      listed.map((r) => r.seq),
      [2, 1],
      'one append order across replicas',
    );

    assert.equal((await api(a.url, 'DELETE', `/api/v1/keys/${k.body.id}`, adminKey)).status, 200);
    assert.equal((await ask(a.url, k.body.key)).status, 401, 'A refuses it on the very next request');
    // B cached the key; the change feed tells it within a second (docs/storage.md#replicas).
    const t0 = Date.now();
    // Served meanwhile (allowed inside the bound) is recorded too, and verified below.
    let servedMeanwhile = 0;
    await eventually(
      async () => {
        const status = (await ask(b.url, k.body.key)).status;
        if (status === 200) servedMeanwhile++;
        return status === 401;
      },
      {
        what: 'B to refuse the key A revoked',
        timeoutMs: 1000,
        intervalMs: 10,
      },
    );
    assert.ok(Date.now() - t0 <= 1000);

    const verify = await api<{ ok: boolean; checked: number }>(
      b.url,
      'GET',
      '/api/v1/audit/verify',
      adminKey,
    );
    assert.equal(verify.body.ok, true);
    assert.equal(verify.body.checked, 2 + servedMeanwhile);
  });

  it('delivers live events published on one replica to WebSocket clients of the other', async () => {
    const u = await api<User>(a.url, 'POST', '/api/v1/users', adminKey, { email: 'live@example.com' });
    assert.equal(u.status, 201);
    const k = await api<CreatedKey>(a.url, 'POST', '/api/v1/users/live%40example.com/keys', adminKey, {});
    const onB = liveClient(b.url, { key: adminKey });
    try {
      await onB.next('hello');
      const res = await ask(a.url, k.body.key);
      const id = res.headers.get('x-aibridge-interception-id');
      assert.ok(id);
      const ended = await onB.next('interception.ended', (e) => e.interceptionId === id, 10_000);
      assert.equal(ended.userId, u.body.id);
      assert.ok(onB.events.some((e) => e.type === 'interception.started' && e.interceptionId === id));
    } finally {
      await onB.close();
    }
  });

  it('reloads documents another replica changed (model policies)', async () => {
    const u = await api<User>(a.url, 'POST', '/api/v1/users', adminKey, {
      email: 'pol@example.com',
      team: 'blue',
    });
    assert.equal(u.status, 201);
    const k = await api<CreatedKey>(a.url, 'POST', '/api/v1/users/pol%40example.com/keys', adminKey, {});
    assert.equal((await ask(b.url, k.body.key)).status, 200);
    const put = await api(a.url, 'PUT', '/api/v1/teams/blue/models', adminKey, {
      allow: ['gpt-*'],
      deny: [],
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await eventually(async () => ((await ask(b.url, k.body.key)).status === 403 ? true : undefined), {
      what: 'B to refuse the model A disallowed',
      timeoutMs: 10_000,
      intervalMs: 50,
    });
  });

  it('reloads every kind of document once it listens again: a change made while its connection was down is not missed', async () => {
    await api<User>(a.url, 'POST', '/api/v1/users', adminKey, { email: 'deaf@example.com', team: 'green' });
    const k = await api<CreatedKey>(a.url, 'POST', '/api/v1/users/deaf%40example.com/keys', adminKey, {});
    assert.equal((await ask(b.url, k.body.key)).status, 200);
    const db = new pg.Client({ connectionString: dbUrl });
    await db.connect();
    try {
      // Both replicas' listening connections drop; each listens again a second later. The policy
      // written meanwhile notifies nobody.
      const killed = await db.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`,
      );
      assert.equal(killed.rowCount, 2);
      const put = await api(a.url, 'PUT', '/api/v1/teams/green/models', adminKey, {
        allow: ['gpt-*'],
        deny: [],
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
    } finally {
      await db.end();
    }
    await eventually(async () => ((await ask(b.url, k.body.key)).status === 403 ? true : undefined), {
      what: 'B to refuse the model A disallowed while B was not listening',
      timeoutMs: 10_000,
      intervalMs: 100,
    });
  });

  it('reloads the tool policy another replica wrote', async () => {
    const rules = [{ id: 'no-rm', tool: 'Bash', argumentPattern: 'rm -rf', action: 'deny', scope: 'org' }];
    const put = await api(a.url, 'PUT', '/api/v1/tool-policy', adminKey, { rules });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await eventually(
      async () => {
        const got = await api<{ rules: unknown[] }>(b.url, 'GET', '/api/v1/tool-policy', adminKey);
        // jsonb keeps no key order: compare as values.
        return isDeepStrictEqual(got.body.rules, rules) ? true : undefined;
      },
      { what: 'B to load the rules A wrote', timeoutMs: 10_000, intervalMs: 50 },
    );
  });

  it('reloads MCP servers another replica added or deleted', async () => {
    const names = async (base: string): Promise<string[]> =>
      (await api<{ items: { name: string }[] }>(base, 'GET', '/api/v1/mcp/servers', adminKey)).body.items.map(
        (s) => s.name,
      );
    const put = await api(a.url, 'PUT', '/api/v1/mcp/servers/wiki', adminKey, {
      // Nothing listens there: the server is listed (and down) on both replicas.
      transport: { type: 'http', url: 'http://127.0.0.1:9/mcp' },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await eventually(async () => ((await names(b.url)).includes('wiki') ? true : undefined), {
      what: 'B to list the server',
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    assert.equal((await api(a.url, 'DELETE', '/api/v1/mcp/servers/wiki', adminKey)).status, 204);
    await eventually(async () => (!(await names(b.url)).includes('wiki') ? true : undefined), {
      what: 'B to drop it',
      timeoutMs: 10_000,
      intervalMs: 50,
    });
  });

  it('enforces a blocking budget across replicas: parallel requests on both overspend by at most one request', async () => {
    const probe = await api<User>(a.url, 'POST', '/api/v1/users', adminKey, { email: 'probe@example.com' });
    assert.equal(probe.status, 201);
    const pk = await api<CreatedKey>(a.url, 'POST', '/api/v1/users/probe%40example.com/keys', adminKey, {});
    await ask(a.url, pk.body.key);
    const cost = await eventually(
      async () => {
        const r = await api<Page<Interception>>(
          a.url,
          'GET',
          `/api/v1/interceptions?user=${probe.body.id}`,
          adminKey,
        );
        return r.body.items[0]?.costUsd ?? undefined;
      },
      { what: 'the probe record', timeoutMs: 10_000, intervalMs: 50 },
    );
    assert.ok(cost > 0);

    const u = await api<User>(a.url, 'POST', '/api/v1/users', adminKey, { email: 'spender@example.com' });
    const k = await api<CreatedKey>(a.url, 'POST', '/api/v1/users/spender%40example.com/keys', adminKey, {});
    const limit = cost * 5.5;
    const put = await api<{ id: string }>(a.url, 'PUT', '/api/v1/budgets', adminKey, {
      scope: 'user',
      subject: 'spender@example.com',
      period: 'day',
      limitUsd: limit,
      action: 'block',
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await eventually(
      async () => {
        const r = await api<{ items: { id: string }[] }>(b.url, 'GET', '/api/v1/budgets', adminKey);
        return r.body.items.some((x) => x.id === put.body.id) ? true : undefined;
      },
      { what: 'B to know the budget A created', timeoutMs: 10_000, intervalMs: 50 },
    );

    let ok = 0;
    for (let wave = 0; wave < 20; wave++) {
      const all = Array.from({ length: 10 }, (_, i) => ask(i % 2 === 0 ? a.url : b.url, k.body.key));
      const admitted = (await Promise.all(all)).filter((r) => r.status === 200).length;
      ok += admitted;
      if (admitted === 0) break;
    }
    assert.ok(ok >= 5, `${ok} requests admitted`);
    const status = await eventually(
      async () => {
        const r = await api<{ spentUsd: number; reservedUsd: number }>(
          b.url,
          'GET',
          `/api/v1/budgets/${put.body.id}`,
          adminKey,
        );
        return r.body.reservedUsd === 0 ? r.body : undefined;
      },
      { what: 'every reservation settled', timeoutMs: 10_000, intervalMs: 50 },
    );
    assert.ok(
      status.spentUsd <= limit + cost + 1e-9,
      `spent ${status.spentUsd} > limit ${limit} + one request`,
    );
    assert.ok(status.spentUsd >= limit - 1e-9, `spent ${status.spentUsd}: stopped before the limit`);
    assert.equal(u.status, 201);
  });
});
