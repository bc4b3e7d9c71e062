import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import type { User } from '../../shared/identity';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { testPostgres } from '../helpers/postgres';

const BIN = path.resolve('dist/aibridge.cjs');

/** `aibridge serve` until it exits (a refused start) or prints its listening line (then it is stopped). */
function serve(dataDir: string, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--data-dir', dataDir], {
      env: { PATH: process.env.PATH, AIBRIDGE_LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const take = (c: Buffer): void => {
      out += c;
      if (/listening on http/.test(out)) child.kill('SIGTERM');
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('the embedded store and its key-hash secret', function () {
  this.timeout(60_000);

  it('a data dir whose key-hash.secret was replaced refuses to start instead of refusing every key', async () => {
    const upstream = await new AnthropicMock().start();
    try {
      const dir = await tempDir();
      await (await startBridge(upstream.url, {}, dir)).close();
      await fs.writeFile(path.join(dir, 'key-hash.secret'), `${randomBytes(32).toString('base64url')}\n`);
      await assert.rejects(startBridge(upstream.url, {}, dir), /AIBRIDGE_KEY_HASH_SECRET/);
    } finally {
      await upstream.stop();
    }
  });

  it('the secret a data dir generated, given as AIBRIDGE_KEY_HASH_SECRET=base64url:…, checks the keys it hashed', async () => {
    // What a move from one embedded bridge to replicas that share the secret by environment does.
    const upstream = await new AnthropicMock().start();
    try {
      const dir = await tempDir();
      const first = await startBridge(upstream.url, {}, dir);
      const dev = await first.addUser('moved@example.com');
      await first.close();
      const file = (await fs.readFile(path.join(dir, 'key-hash.secret'), 'utf8')).trim();
      const elsewhere = await tempDir();
      await fs.copyFile(path.join(dir, 'db.json'), path.join(elsewhere, 'db.json'));
      await fs.copyFile(path.join(dir, 'admin.key'), path.join(elsewhere, 'admin.key'));
      const moved = await startBridge(
        upstream.url,
        { AIBRIDGE_KEY_HASH_SECRET: `base64url:${file}` },
        elsewhere,
      );
      try {
        assert.equal((await moved.api('GET', '/api/v1/me', dev.key)).status, 200);
      } finally {
        await moved.close();
      }
    } finally {
      await upstream.stop();
    }
  });

  it('refuses a blank secret or the shipped placeholder at start, naming the setting', async () => {
    for (const value of [' ', 'CHANGE-ME-32-random-bytes-base64', 'base64url:']) {
      const r = await serve(await tempDir(), { AIBRIDGE_KEY_HASH_SECRET: value });
      assert.notEqual(r.code, 0, r.out);
      assert.match(r.out, /AIBRIDGE_KEY_HASH_SECRET/);
      assert.doesNotMatch(r.out, /listening on/);
    }
  });
});

describe('replicas that disagree on the key-hash secret', function () {
  this.timeout(90_000);
  let upstream: AnthropicMock;
  let url: string;
  let first: TestBridge;
  const secret = randomBytes(32).toString('base64url');

  before(async () => {
    upstream = await new AnthropicMock().start();
    url = await (await testPostgres()).createDatabase('keysecret');
    first = await startBridge(upstream.url, { AIBRIDGE_DATABASE_URL: url, AIBRIDGE_KEY_HASH_SECRET: secret });
  });

  after(async () => {
    await first?.close();
    await upstream?.stop();
  });

  it('stores a verifier of the secret, never the secret', async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const r = await c.query<{ name: string; value: string }>(
        "SELECT name, value FROM bridge_settings WHERE name LIKE 'key%'",
      );
      assert.deepEqual(
        r.rows.map((x) => x.name),
        ['key_hash_verifier'],
      );
      assert.match(r.rows[0]!.value, /^[0-9a-f]{64}$/);
      const dump = JSON.stringify((await c.query('SELECT * FROM bridge_settings')).rows);
      assert.ok(!dump.includes(secret), 'the secret itself is not stored');
    } finally {
      await c.end();
    }
  });

  it('a replica with another AIBRIDGE_KEY_HASH_SECRET refuses to start, naming the setting', async () => {
    await assert.rejects(
      startBridge(upstream.url, {
        AIBRIDGE_DATABASE_URL: url,
        AIBRIDGE_KEY_HASH_SECRET: randomBytes(32).toString('base64url'),
      }),
      /AIBRIDGE_KEY_HASH_SECRET/,
    );
  });

  it('a replica with no secret (one generated in its own data dir) refuses to start', async () => {
    await assert.rejects(
      startBridge(upstream.url, { AIBRIDGE_DATABASE_URL: url }),
      /AIBRIDGE_KEY_HASH_SECRET/,
    );
  });

  it('`aibridge serve` exits non-zero with the reason', async () => {
    const r = await serve(await tempDir(), {
      AIBRIDGE_DATABASE_URL: url,
      AIBRIDGE_ANTHROPIC_BASE_URL: upstream.url,
      AIBRIDGE_KEY_HASH_SECRET: 'not the same secret at all',
    });
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /AIBRIDGE_KEY_HASH_SECRET/);
    assert.doesNotMatch(r.out, /listening on/);
  });

  it('a replica with the same secret starts and accepts the keys the first one issued', async () => {
    const second = await startBridge(
      upstream.url,
      { AIBRIDGE_DATABASE_URL: url, AIBRIDGE_KEY_HASH_SECRET: secret },
      // The data dir holds only the bootstrap admin's key file here: the store is the database.
      first.dataDir,
    );
    try {
      const me = await second.api<User>('GET', '/api/v1/me', first.adminKey);
      assert.equal(me.status, 200);
    } finally {
      await second.close();
    }
  });
});
