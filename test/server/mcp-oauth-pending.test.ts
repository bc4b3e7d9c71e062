import assert from 'node:assert/strict';
import { PendingAuthorisations } from '../../server/mcp/oauth';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { PostgresStore } from '../../server/store/postgres/postgres-store';
import type { Store } from '../../server/store/types';
import { tempDir } from '../helpers/bridge';
import { testPostgres } from '../helpers/postgres';

/**
 * Per-user MCP OAuth authorisations under way live in the store: a callback reaching another
 * replica finds them, a state works once, and a user's repeated starts do not grow the store.
 * Two PendingAuthorisations on two store connections stand for two replicas.
 */
for (const kind of ['embedded', 'postgres'] as const) {
  describe(`per-user MCP OAuth authorisations under way (${kind} store)`, () => {
    let a: Store;
    let b: Store;
    before(async () => {
      if (kind === 'embedded') {
        const store = new EmbeddedStore({ dataDir: await tempDir() });
        await store.open();
        a = store;
        b = store;
      } else {
        const url = await (await testPostgres()).createDatabase('mcp_oauth_pending');
        const open = async (): Promise<PostgresStore> => {
          const s = new PostgresStore({ url, maxConnections: 2 });
          await s.open();
          return s;
        };
        a = await open();
        b = await open();
      }
    });
    after(async () => {
      await a.close();
      if (b !== a) await b.close();
    });

    it('a state started on one replica is confirmed and taken on another, once', async () => {
      const one = new PendingAuthorisations(a);
      const two = new PendingAuthorisations(b);
      const state = await one.add('wiki', 'usr_1', 'https://bridge.example/api/v1/mcp/oauth/callback');
      assert.deepEqual(await two.peek(state), { server: 'wiki', userId: 'usr_1' });
      const both = await Promise.all([one.take(state), two.take(state)]);
      assert.deepEqual(
        both.filter((x) => x !== undefined),
        [{ server: 'wiki', userId: 'usr_1', redirect: 'https://bridge.example/api/v1/mcp/oauth/callback' }],
        'exactly one of two concurrent callbacks gets it',
      );
      assert.equal(await two.peek(state), undefined);
      assert.equal(await one.take(state), undefined);
      assert.deepEqual(await a.listDocs('mcp_oauth_latest'), [], 'nothing left behind');
    });

    it('keeps one authorisation per user and server: repeated starts replace, and the state is not stored in clear', async () => {
      const p = new PendingAuthorisations(a);
      const states: string[] = [];
      for (let i = 0; i < 30; i++) states.push(await p.add('wiki', 'usr_2', 'https://b/cb'));
      const other = await p.add('tracker', 'usr_2', 'https://b/cb');
      const docs = JSON.stringify(await a.listDocs('mcp_oauth_pending'));
      assert.equal((await a.listDocs('mcp_oauth_pending')).length, 2, docs);
      for (const s of states.slice(0, -1)) assert.equal(await p.peek(s), undefined, 'replaced');
      assert.deepEqual(await p.peek(states.at(-1)!), { server: 'wiki', userId: 'usr_2' });
      assert.deepEqual(await p.peek(other), { server: 'tracker', userId: 'usr_2' });
      for (const s of [...states, other])
        assert.ok(!docs.includes(s), 'only the SHA-256 of a state is stored');
      assert.ok(await p.take(states.at(-1)!));
      assert.ok(await p.take(other));
    });

    it('an expired or malformed state is unknown', async () => {
      let now = Date.now();
      const p = new PendingAuthorisations(a, () => now);
      const state = await p.add('wiki', 'usr_3', 'https://b/cb');
      now += 10 * 60_000 + 1;
      assert.equal(await p.peek(state), undefined);
      assert.equal(await p.take(state), undefined);
      assert.equal(await p.peek(''), undefined);
      assert.equal(await p.take('x'.repeat(10_000)), undefined);
    });
  });
}
