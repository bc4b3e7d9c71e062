import assert from 'node:assert/strict';
import pg from 'pg';
import { onNewDatabase } from '../helpers/pg-store';
import { newRecord } from './contract';

/** Ready means the store takes writes (docs/operations.md), for a database that answers too. */
describe('PostgreSQL store readiness', function () {
  this.timeout(60_000);

  it('is not ready while the database refuses its records (as a full disk does), and ready again once one is written', async () => {
    const { store, sql } = await onNewDatabase('pghealth');
    try {
      await store.appendInterception(newRecord(0));
      assert.equal((await store.health()).ok, true);
      // Every insert refused, as by a disk that is full: the database still answers queries.
      await sql.query('ALTER TABLE interceptions ADD CONSTRAINT refuse_all CHECK (false) NOT VALID');
      await assert.rejects(store.appendInterception(newRecord(1)));
      const refused = await store.health();
      assert.equal(refused.ok, false);
      assert.match(refused.detail ?? '', /audit writes failing/);
      await sql.query('ALTER TABLE interceptions DROP CONSTRAINT refuse_all');
      await store.appendInterception(newRecord(2));
      assert.equal((await store.health()).ok, true);
    } finally {
      await store.close();
      await sql.end();
    }
  });

  it('answers "not ready" within its wait when the database stops answering, with one probe query at a time', async () => {
    const { url, store, sql } = await onNewDatabase('pghealthhang');
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    try {
      assert.equal((await store.health()).ok, true);
      // The probe's table locked by another session: its query waits, as on a paused database.
      await locker.query('BEGIN; LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE');
      const started = Date.now();
      const [first, second] = await Promise.all([store.health(), store.health()]);
      assert.ok(Date.now() - started < 4_000, `answered after ${Date.now() - started} ms`);
      for (const h of [first, second]) {
        assert.equal(h.ok, false);
        assert.match(h.detail ?? '', /did not answer within 2000 ms/);
      }
      const third = await store.health();
      assert.equal(third.ok, false);
      const waiting = await sql.query<{ n: string }>(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE '%FROM schema_migrations%' AND wait_event_type = 'Lock'",
      );
      assert.equal(Number(waiting.rows[0]!.n), 1, 'the probes shared one query');
      await locker.query('COMMIT');
      assert.equal((await store.health()).ok, true);
    } finally {
      await locker.end();
      await store.close();
      await sql.end();
    }
  });

  it('stays ready, and says busy, while every pooled connection is in use', async () => {
    const { url, store, sql } = await onNewDatabase('pghealthbusy', { maxConnections: 2 });
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    try {
      // Both of the pool's connections held by statements waiting on a lock: load, not an outage.
      await locker.query('BEGIN; LOCK TABLE bridge_keys IN ACCESS EXCLUSIVE MODE');
      const at = new Date().toISOString();
      const held = [store.revokeKey('key_a', at), store.revokeKey('key_b', at)];
      await new Promise((r) => setTimeout(r, 200));
      const busy = await store.health();
      assert.equal(busy.ok, true, JSON.stringify(busy));
      assert.match(busy.detail ?? '', /database busy/);
      await locker.query('COMMIT');
      await Promise.all(held);
      assert.deepEqual(await store.health(), { ok: true, migrations: (await store.health()).migrations });
    } finally {
      await locker.end();
      await store.close();
      await sql.end();
    }
  });
});
