import assert from 'node:assert/strict';
import { isBridgeError } from '../../server/errors';
import { PostgresStore, type PostgresStoreOptions } from '../../server/store/postgres/postgres-store';
import { testPostgres } from '../helpers/postgres';
import { newRecord } from './contract';

/** A search text that makes the database compare each long prompt at every place (storeWithLongPrompts). */
const SLOW_SEARCH = `${'a'.repeat(499)}b`;

/**
 * A store holding 60 records of 64 KB prompts, which SLOW_SEARCH takes seconds to search: what a
 * member's search can cost (docs/storage.md#reads-that-walk-records).
 */
async function storeWithLongPrompts(
  db: string,
  opts: Omit<PostgresStoreOptions, 'url'>,
): Promise<PostgresStore> {
  const url = await (await testPostgres()).createDatabase(db);
  const store = new PostgresStore({ url, ...opts });
  await store.open();
  const prompt = 'a'.repeat(64 * 1024);
  await Promise.all(Array.from({ length: 60 }, (_, i) => store.appendInterception(newRecord(i, { prompt }))));
  return store;
}

/** How a search ended: `answered`, or its error's code. */
const outcome = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'answered',
    (err: unknown) => (isBridgeError(err) ? err.code : String(err)),
  );

describe('PostgreSQL reads that walk records', function () {
  this.timeout(60_000);

  it('run on connections of their own under a statement timeout: a slow search is stopped, and never holds up writes or key checks', async () => {
    const store = await storeWithLongPrompts('readpool', { maxConnections: 2, readTimeoutMs: 300 });
    try {
      // More slow searches than the main pool has connections, all at once.
      const searches = Array.from({ length: 6 }, () =>
        outcome(store.listInterceptions({ q: SLOW_SEARCH }, 10)),
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
    const store = await storeWithLongPrompts('orgreadpool', { readTimeoutMs: 1500 });
    try {
      // Members read only their own records: more slow searches of one user than the read pool holds.
      const searches = Array.from({ length: 5 }, () =>
        outcome(store.listInterceptions({ userId: 'usr_a', q: SLOW_SEARCH }, 10)),
      );
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      const page = await store.listInterceptions({}, 5);
      const orgMs = Date.now() - t0;
      assert.equal(page.items.length, 5);
      assert.ok(orgMs < 700, `a read across every user waited ${orgMs} ms behind one member's searches`);
      // And one across every user that is slow itself is still stopped by the timeout.
      assert.equal(await outcome(store.listInterceptions({ q: SLOW_SEARCH }, 10)), 'search_timeout');
      // The first three held the member read connections for the whole timeout, the org read meanwhile.
      const outcomes = await Promise.all(searches);
      assert.deepEqual(outcomes.slice(0, 3), ['search_timeout', 'search_timeout', 'search_timeout']);
    } finally {
      await store.close();
    }
  });
});
