import assert from 'node:assert/strict';
import { isBridgeError } from '../../server/errors';
import { PostgresStore } from '../../server/store/postgres/postgres-store';
import { testPostgres } from '../helpers/postgres';
import { newRecord } from './contract';

describe('PostgreSQL reads that walk records', function () {
  this.timeout(60_000);

  it('run on connections of their own under a statement timeout: a slow search is stopped, and never holds up writes or key checks', async () => {
    const url = await (await testPostgres()).createDatabase('readpool');
    const store = new PostgresStore({ url, maxConnections: 2, readTimeoutMs: 300 });
    await store.open();
    try {
      // Long prompts and a search text that makes the database compare each one at every place:
      // what a member's search can cost (docs/storage.md#reads-that-walk-records).
      const prompt = 'a'.repeat(64 * 1024);
      await Promise.all(
        Array.from({ length: 60 }, (_, i) => store.appendInterception(newRecord(i, { prompt }))),
      );
      const q = `${'a'.repeat(499)}b`;
      // More slow searches than the main pool has connections, all at once.
      const searches = Array.from({ length: 6 }, () =>
        store.listInterceptions({ q }, 10).then(
          () => 'answered',
          (err: unknown) => (isBridgeError(err) ? err.code : String(err)),
        ),
      );
      // Meanwhile the hot path's statements go through at once.
      const t0 = Date.now();
      await store.appendInterception(newRecord(100));
      assert.ok(await store.getUserByEmail('nobody@example.com').then(() => true));
      const hotPathMs = Date.now() - t0;
      assert.ok(hotPathMs < 250, `a write and a lookup waited ${hotPathMs} ms behind searches`);
      const outcomes = await Promise.all(searches);
      assert.ok(
        outcomes.every((o) => o === 'search_timeout'),
        `every search is stopped by the timeout: ${outcomes.join(', ')}`,
      );
      // A quick read still answers.
      assert.equal((await store.listInterceptions({}, 5)).items.length, 5);
    } finally {
      await store.close();
    }
  });

  it('members’ slow searches never hold up a read across every user (an admin’s): it has connections of its own', async () => {
    const url = await (await testPostgres()).createDatabase('orgreadpool');
    const store = new PostgresStore({ url, readTimeoutMs: 1500 });
    await store.open();
    try {
      const prompt = 'a'.repeat(64 * 1024);
      await Promise.all(
        Array.from({ length: 60 }, (_, i) => store.appendInterception(newRecord(i, { prompt }))),
      );
      const q = `${'a'.repeat(499)}b`;
      // Members read only their own records: more slow searches of one user than the read pool holds.
      const searches = Array.from({ length: 5 }, () =>
        store.listInterceptions({ userId: 'usr_a', q }, 10).then(
          () => 'answered',
          (err: unknown) => (isBridgeError(err) ? err.code : String(err)),
        ),
      );
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      const page = await store.listInterceptions({}, 5);
      const orgMs = Date.now() - t0;
      assert.equal(page.items.length, 5);
      assert.ok(orgMs < 700, `a read across every user waited ${orgMs} ms behind one member's searches`);
      // And one across every user that is slow itself is still stopped by the timeout.
      await assert.rejects(store.listInterceptions({ q }, 10), (err: unknown) => {
        assert.ok(isBridgeError(err) && err.code === 'search_timeout');
        return true;
      });
      // The first three held the member read connections for the whole timeout, the org read meanwhile.
      const outcomes = await Promise.all(searches);
      assert.deepEqual(outcomes.slice(0, 3), ['search_timeout', 'search_timeout', 'search_timeout']);
    } finally {
      await store.close();
    }
  });
});
