import assert from 'node:assert/strict';
import { PostgresStore } from '../../server/store/postgres/postgres-store';
import { onNewDatabase } from '../helpers/pg-store';
import { newRecord } from './contract';

/** Migration 4 on a database that already has records: every user's last request is known at once. */
describe('PostgreSQL: the last-request rollup on an existing database', function () {
  this.timeout(60_000);

  it("fills each user's last request from the records, or from the rollups where retention took them", async () => {
    const { url, store, sql } = await onNewDatabase('lastreq');
    try {
      for (const i of [0, 1, 2, 3, 4]) await store.appendInterception(newRecord(i));
      // usr_c's only record is at 11:25; retention deleted it, its hourly rollup stayed.
      await store.appendInterception(
        newRecord(5, { userId: 'usr_c', userEmail: 'c@example.com', startedAt: '2026-03-02T11:25:00.000Z' }),
      );
      await store.close();
      // The database as step 3 left it.
      await sql.query(`DELETE FROM interceptions WHERE user_id = 'usr_c'`);
      await sql.query('DROP TABLE user_last_request');
      await sql.query('DELETE FROM schema_migrations WHERE version = 4');

      const upgraded = new PostgresStore({ url, maxConnections: 2 });
      await upgraded.open();
      try {
        assert.deepEqual(
          await upgraded.lastRequestAt(),
          new Map([
            ['usr_a', newRecord(4).startedAt],
            ['usr_b', newRecord(3).startedAt],
            ['usr_c', '2026-03-02T11:00:00.000Z'],
          ]),
        );
      } finally {
        await upgraded.close();
      }
    } finally {
      await sql.end();
    }
  });
});
