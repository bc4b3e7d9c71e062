import assert from 'node:assert/strict';
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
});
