import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import pg from 'pg';
import { isBridgeError } from '../../server/errors';
import { asStoreError } from '../../server/store/postgres/pg-errors';
import { testPostgres } from '../helpers/postgres';

/** What a pool's failure becomes for the bridge's callers. */
async function failureOf(pool: pg.Pool): Promise<unknown> {
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    return asStoreError(err);
  }
  throw new Error('the query succeeded');
}

describe('PostgreSQL failures as the bridge reports them', function () {
  this.timeout(30_000);

  it('a pool with every connection in use for its whole wait is busy (503 server_busy, retry-after), not unreachable', async () => {
    const url = await (await testPostgres()).createDatabase('pgerrors');
    const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 200 });
    const held = await pool.connect();
    try {
      const err = await failureOf(pool);
      assert.ok(isBridgeError(err), String(err));
      assert.equal(err.code, 'server_busy');
      assert.equal(err.status, 503);
      assert.equal(err.headers['retry-after'], '1');
    } finally {
      held.release();
      await pool.end();
    }
  });

  it('a server whose connection slots are all taken (53300, FATAL) is busy too, not unreachable', async () => {
    const url = await (await testPostgres()).createDatabase('pgslots');
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    const role = `slots_${Date.now()}`;
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw' CONNECTION LIMIT 1`);
    const as = new URL(url);
    as.username = role;
    as.password = 'pw';
    const first = new pg.Client({ connectionString: as.toString() });
    await first.connect();
    const pool = new pg.Pool({ connectionString: as.toString(), connectionTimeoutMillis: 2000 });
    try {
      const err = await failureOf(pool);
      assert.ok(isBridgeError(err), String(err));
      assert.equal(err.code, 'server_busy');
      assert.equal((err.cause as { code?: string }).code, '53300');
    } finally {
      await pool.end();
      await first.end();
      await admin.query(`DROP ROLE ${role}`).catch(() => undefined);
      await admin.end();
    }
  });

  it('a database that refuses or does not answer a new connection is store_unavailable', async () => {
    // A port that accepts and says nothing: the connection times out.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    const quiet = new pg.Pool({
      connectionString: `postgres://u:p@127.0.0.1:${port}/db`,
      connectionTimeoutMillis: 200,
    });
    const closed = new pg.Pool({
      connectionString: 'postgres://u:p@127.0.0.1:1/db',
      connectionTimeoutMillis: 200,
    });
    try {
      for (const pool of [quiet, closed]) {
        const err = await failureOf(pool);
        assert.ok(isBridgeError(err), String(err));
        assert.equal(err.code, 'store_unavailable');
      }
    } finally {
      await quiet.end();
      await closed.end();
      silent.close();
    }
  });
});
