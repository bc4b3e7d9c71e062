import assert from 'node:assert/strict';
import { claimChainAnchor, verifyStoredChain } from '../../server/audit/chain-anchor';
import { chainHash, GENESIS, parseAnchor, verifyChain } from '../../server/core/chain';
import type { KeyRecord } from '../../server/core/principal';
import { ToolPolicy } from '../../server/policy/tool-policy';
import type {
  AccessLogEntry,
  BudgetClaim,
  GatewayCallQuery,
  NewInterception,
  Store,
  StoreChange,
} from '../../server/store/types';
import { ITEM_RECORDS_LIMIT } from '../../server/store/types';
import type { User } from '../../shared/identity';
import type { GatewayToolCall, Interception, ToolCallRecord } from '../../shared/interception';
import type { Alert } from '../../shared/spend';

/** A fresh, empty store of one kind, and how to open the same data again (a restart). */
export interface StoreFixture {
  store: Store;
  reopen(): Promise<Store>;
}

export type StoreFactory = () => Promise<StoreFixture>;

const T0 = Date.parse('2026-03-02T10:00:00.000Z');

/** A client tool call of that name, its id made from the name (for the tool filter's tests). */
export function toolCallNamed(name: string, at: string): ToolCallRecord {
  return { id: `c_${name}`, name, server: null, input: {}, injected: false, at };
}

export function newRecord(i: number, over: Partial<NewInterception> = {}): NewInterception {
  return {
    id: `int_${String(i).padStart(6, '0')}`,
    userId: i % 2 === 0 ? 'usr_a' : 'usr_b',
    userEmail: i % 2 === 0 ? 'a@example.com' : 'b@example.com',
    team: i % 2 === 0 ? 'red' : null,
    keyId: 'key_1',
    provider: i % 3 === 0 ? 'openai' : 'anthropic',
    api: i % 3 === 0 ? 'chat.completions' : 'messages',
    model: i % 3 === 0 ? 'gpt-5' : 'claude-sonnet-4-6',
    client: 'claude-code',
    sessionId: `ses_${i % 4}`,
    startedAt: new Date(T0 + i * 60_000).toISOString(),
    endedAt: new Date(T0 + i * 60_000 + 500).toISOString(),
    durationMs: 500,
    status: i % 5 === 4 ? 'error' : 'ok',
    httpStatus: i % 5 === 4 ? 529 : 200,
    streamed: true,
    usage: { input: 100 + i, output: 10, cacheRead: 5, cacheWrite: 1, reasoning: 0 },
    costUsd: i % 7 === 6 ? null : 0.001 * (i + 1),
    priceKnown: i % 7 !== 6,
    prompt: `prompt number ${i} about ${i % 2 === 0 ? 'Rust' : 'Go'} — ✓`,
    toolCalls: [],
    error: null,
    upstreamRequestId: null,
    redactions: [],
    ...over,
  };
}

function user(n: number, over: Partial<User> = {}): User {
  return {
    id: `usr_${n}`,
    email: `User${n}@Example.com`,
    name: `User ${n}`,
    team: n % 2 === 0 ? 'red' : null,
    role: 'member',
    createdAt: new Date(T0 + n).toISOString(),
    ...over,
  };
}

function key(n: number, userId: string): KeyRecord {
  return {
    id: `key_${n}`,
    userId,
    name: `key ${n}`,
    prefix: `abk_${n}`,
    createdAt: new Date(T0 + n).toISOString(),
    expiresAt: null,
    revokedAt: null,
    lastUsedAt: null,
    hash: `hash_${n}`,
  };
}

function alert(n: number, over: Partial<Alert> = {}): Alert {
  return {
    id: `alr_${n}`,
    kind: 'budget',
    rule: 'budget_threshold',
    at: new Date(T0 + n * 1000).toISOString(),
    userId: n % 2 === 0 ? 'usr_a' : null,
    userEmail: null,
    team: null,
    observed: n,
    baseline: 10,
    unit: 'usd',
    message: `alert ${n}`,
    budgetId: null,
    ...over,
  };
}

async function all(it: AsyncIterable<Interception>): Promise<Interception[]> {
  const out: Interception[] = [];
  for await (const r of it) out.push(r);
  return out;
}

async function appendMany(store: Store, n: number, from = 0): Promise<Interception[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => store.appendInterception(newRecord(from + i))));
}

/**
 * The behaviour every Store must have, run against each implementation (embedded, PostgreSQL).
 * Whatever the bridge relies on is here, so a second store cannot quietly differ from the first.
 */
export function storeContract(name: string, factory: StoreFactory): void {
  describe(`Store contract: ${name}`, () => {
    let fx: StoreFixture;
    let store: Store;
    const opened: Store[] = [];

    beforeEach(async () => {
      fx = await factory();
      store = fx.store;
      opened.push(store);
    });

    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close().catch(() => undefined);
    });

    async function restart(): Promise<Store> {
      await store.close();
      store = await fx.reopen();
      opened.push(store);
      return store;
    }

    it('reports itself healthy once open', async () => {
      const h = await store.health();
      assert.equal(h.ok, true, h.detail);
      assert.equal(typeof store.kind, 'string');
    });

    describe('users and keys', () => {
      it('creates, finds (email case-insensitively), lists in creation order and counts users', async () => {
        assert.equal(await store.countUsers(), 0);
        await store.createUser(user(1));
        await store.createUser(user(2, { role: 'admin' }));
        assert.equal(await store.countUsers(), 2);
        assert.deepEqual(await store.getUserById('usr_2'), user(2, { role: 'admin' }));
        assert.equal((await store.getUserByEmail('user1@example.COM'))?.id, 'usr_1');
        assert.equal(await store.getUserByEmail('nobody@example.com'), undefined);
        assert.equal(await store.getUserById('usr_9'), undefined);
        assert.deepEqual(
          (await store.listUsers()).map((u) => u.id),
          ['usr_1', 'usr_2'],
        );
        await restart();
        assert.deepEqual(await store.getUserById('usr_1'), user(1));
      });

      it("updates a user's name, team and role, leaving other fields and users as they were", async () => {
        await store.createUser(user(1, { team: 'red' }));
        await store.createUser(user(2));
        const updated = await store.updateUser('usr_1', { team: 'blue', role: 'admin' });
        assert.deepEqual(updated, user(1, { team: 'blue', role: 'admin' }));
        assert.deepEqual(
          await store.updateUser('usr_1', { team: null }),
          user(1, { team: null, role: 'admin' }),
        );
        assert.equal(await store.updateUser('usr_9', { team: 'x' }), undefined);
        assert.deepEqual(await store.getUserById('usr_2'), user(2));
        assert.equal((await store.getUserByEmail('user1@example.com'))?.role, 'admin');
        await restart();
        assert.deepEqual(await store.getUserById('usr_1'), user(1, { team: null, role: 'admin' }));
      });

      it('deactivates a user (deactivatedAt) and reactivates them, across a restart', async () => {
        await store.createUser(user(1));
        const at = new Date(T0 + 1000).toISOString();
        assert.equal((await store.updateUser('usr_1', { deactivatedAt: at }))?.deactivatedAt, at);
        await restart();
        assert.equal((await store.getUserById('usr_1'))?.deactivatedAt, at);
        assert.equal((await store.getUserByEmail('user1@example.com'))?.deactivatedAt, at);
        const back = await store.updateUser('usr_1', { deactivatedAt: null });
        assert.equal(back?.deactivatedAt, null);
        assert.equal(back?.email, user(1).email, 'the rest of the user is kept');
        await restart();
        assert.equal((await store.getUserById('usr_1'))?.deactivatedAt, null);
      });

      it('renews only forward, only live keys with an expiry, and keeps it across a restart', async () => {
        await store.createUser(user(1));
        const exp = new Date(T0 + 86_400_000).toISOString();
        await store.createKey({ ...key(1, 'usr_1'), expiresAt: exp, renewable: true });
        await store.createKey(key(2, 'usr_1'));
        await store.createKey({ ...key(3, 'usr_1'), expiresAt: exp });
        const later = new Date(T0 + 7 * 86_400_000).toISOString();
        assert.equal((await store.renewKey('key_1', later))?.expiresAt, later);
        assert.equal((await store.renewKey('key_1', exp))?.expiresAt, later, 'never moved back');
        assert.equal(
          (await store.renewKey('key_2', later))?.expiresAt,
          null,
          'a key without expiry stays so',
        );
        await store.revokeKey('key_3', new Date(T0).toISOString());
        assert.equal((await store.renewKey('key_3', later))?.expiresAt, exp, 'a revoked key is not renewed');
        assert.equal(await store.renewKey('key_9', later), undefined);
        await restart();
        assert.equal((await store.findKeyByHash('hash_1'))?.expiresAt, later);
        assert.equal((await store.getKey('key_1'))?.renewable, true);
      });

      it('deletes keys revoked or expired before the retention window, and only those', async () => {
        await store.createUser(user(1));
        const at = (days: number) => new Date(T0 + days * 86_400_000).toISOString();
        await store.createKey(key(1, 'usr_1'));
        await store.createKey({ ...key(2, 'usr_1'), expiresAt: at(1) });
        await store.createKey({ ...key(3, 'usr_1'), expiresAt: at(20) });
        await store.createKey(key(4, 'usr_1'));
        await store.createKey(key(5, 'usr_1'));
        await store.createKey({ ...key(6, 'usr_1'), expiresAt: at(99) });
        await store.revokeKey('key_4', at(2));
        await store.revokeKey('key_5', at(15));
        assert.equal(await store.pruneKeys(at(10)), 2);
        const left = async () => (await store.listKeys('usr_1')).map((k) => k.id).sort();
        assert.deepEqual(await left(), ['key_1', 'key_3', 'key_5', 'key_6']);
        assert.equal(await store.getKey('key_2'), undefined);
        assert.equal(await store.findKeyByHash('hash_4'), undefined);
        assert.equal((await store.findKeyByHash('hash_5'))?.revokedAt, at(15));
        assert.equal(await store.pruneKeys(at(10)), 0, 'nothing more to delete');
        await restart();
        assert.deepEqual(await left(), ['key_1', 'key_3', 'key_5', 'key_6'], 'gone for good');
        assert.equal(await store.findKeyByHash('hash_2'), undefined);
      });

      it('stores keys by hash, lists them per user, and revokes once', async () => {
        await store.createUser(user(1));
        await store.createKey(key(1, 'usr_1'));
        await store.createKey(key(2, 'usr_1'));
        await store.createKey(key(3, 'usr_2'));
        assert.deepEqual(await store.findKeyByHash('hash_2'), key(2, 'usr_1'));
        assert.equal(await store.findKeyByHash('hash_9'), undefined);
        assert.deepEqual(
          (await store.listKeys('usr_1')).map((k) => k.id),
          ['key_1', 'key_2'],
        );
        const at = new Date(T0 + 5000).toISOString();
        assert.equal((await store.revokeKey('key_1', at))?.revokedAt, at);
        const later = new Date(T0 + 9000).toISOString();
        assert.equal((await store.revokeKey('key_1', later))?.revokedAt, at, 'the first revocation stands');
        assert.equal(await store.revokeKey('key_9', at), undefined);
        assert.equal((await store.findKeyByHash('hash_1'))?.revokedAt, at);
        assert.equal((await store.getKey('key_2'))?.revokedAt, null);
        await restart();
        assert.equal((await store.getKey('key_1'))?.revokedAt, at);
      });

      it("announces key and user changes to its own watchers (every replica's caches follow them)", async () => {
        const heard: StoreChange[] = [];
        const off = store.watch((c) => heard.push(c));
        await store.createUser(user(1));
        await store.createKey({ ...key(1, 'usr_1'), expiresAt: new Date(T0 + 86_400_000).toISOString() });
        await store.createKey(key(2, 'usr_1'));
        assert.deepEqual(heard, [], 'creating is not a change anything cached');
        await store.revokeKey('key_2', new Date(T0).toISOString());
        await store.renewKey('key_1', new Date(T0 + 7 * 86_400_000).toISOString());
        await store.updateUser('usr_1', { team: 'blue' });
        await store.revokeKey('key_9', new Date(T0).toISOString());
        await store.updateUser('usr_9', { team: 'blue' });
        off();
        await store.updateUser('usr_1', { team: 'red' });
        assert.deepEqual(heard, [
          { kind: 'key', id: 'key_2' },
          { kind: 'key', id: 'key_1' },
          { kind: 'user', id: 'usr_1' },
        ]);
      });

      it('keeps last-use times across a restart', async () => {
        await store.createKey(key(1, 'usr_1'));
        const at = new Date(T0 + 7000).toISOString();
        store.touchKey('key_1', at);
        store.touchKey('key_9', at);
        await restart();
        assert.equal((await store.getKey('key_1'))?.lastUsedAt, at);
      });
    });

    describe('interceptions', () => {
      it('gives each record its place in append order and keeps it exactly', async () => {
        const stored = await appendMany(store, 5);
        assert.deepEqual(
          stored.map((r) => r.seq),
          [1, 2, 3, 4, 5],
        );
        const { seq: _s, prevHash: _p, hash: _h, ...rest } = stored[2]!;
        assert.deepEqual(rest, newRecord(2));
        assert.deepEqual(await store.getInterception('int_000002'), stored[2]);
        assert.equal(await store.getInterception('int_999999'), undefined);
        await restart();
        assert.deepEqual(await store.getInterception('int_000002'), stored[2]);
        const more = await store.appendInterception(newRecord(5));
        assert.equal(more.seq, 6, 'numbering continues after a restart');
        assert.equal(more.prevHash, stored[4]!.hash, 'the chain continues after a restart');
      });

      it('finds who owns a stored response by its id, the newest record first, across a restart', async () => {
        assert.equal(await store.responseOwner('resp_1'), undefined, 'an empty store knows no response');
        await store.appendInterception(newRecord(0, { responseId: 'resp_1' }));
        await store.appendInterception(newRecord(1, { responseId: 'resp_2' }));
        await store.appendInterception(newRecord(2));
        assert.equal(await store.responseOwner('resp_1'), 'usr_a');
        assert.equal(await store.responseOwner('resp_2'), 'usr_b');
        assert.equal(await store.responseOwner('resp_3'), undefined);
        assert.equal(await store.responseOwner(''), undefined);
        // An upstream that hands an id out twice: the newest record says whose it is.
        await store.appendInterception(newRecord(3, { responseId: 'resp_1' }));
        assert.equal(await store.responseOwner('resp_1'), 'usr_b');
        await restart();
        assert.equal(await store.responseOwner('resp_1'), 'usr_b');
        assert.equal(await store.responseOwner('resp_2'), 'usr_b');
        assert.equal((await store.getInterception('int_000001'))?.responseId, 'resp_2');
      });

      it("finds who owns each stored output item in one call, across a restart; an id two users hold is nobody's", async () => {
        assert.deepEqual(
          await store.responseItemOwners(['msg_1']),
          new Map(),
          'an empty store knows no item',
        );
        await store.appendInterception(
          newRecord(0, { responseId: 'resp_1', responseItems: ['msg_1', 'rs_1'] }),
        );
        await store.appendInterception(
          newRecord(1, { responseId: 'resp_2', responseItems: ['msg_2', 'fc\u0000x'] }),
        );
        await store.appendInterception(newRecord(2, { responseId: 'resp_3' }));
        const expected = new Map<string, string | null>([
          ['msg_1', 'usr_a'],
          ['rs_1', 'usr_a'],
          ['msg_2', 'usr_b'],
          ['fc\u0000x', 'usr_b'],
        ]);
        const asked = ['msg_1', 'rs_1', 'msg_2', 'fc\u0000x', 'msg_3', 'resp_1', ''];
        assert.deepEqual(await store.responseItemOwners(asked), expected);
        assert.equal((await store.getInterception('int_000000'))?.responseItems?.join(), 'msg_1,rs_1');
        // The same user's again: still theirs. Another user's record holding it (an upstream that
        // echoed the id into their answer): nobody's, whichever is newer.
        await store.appendInterception(newRecord(4, { responseItems: ['rs_1'] }));
        await store.appendInterception(newRecord(3, { responseItems: ['msg_1'] }));
        expected.set('msg_1', null);
        assert.deepEqual(await store.responseItemOwners(asked), expected);
        await restart();
        assert.deepEqual(await store.responseItemOwners(asked), expected);
        assert.deepEqual(await store.responseItemOwners([]), new Map());
        // One user's records repeating an id past ITEM_RECORDS_LIMIT (an upstream whose ids are not
        // unique): nobody's either, on both stores alike.
        for (let i = 0; i < ITEM_RECORDS_LIMIT; i++)
          await store.appendInterception(
            newRecord(10 + 2 * i, { id: `int_rep_${i}`, responseItems: ['msg_rep'] }),
          );
        assert.deepEqual(await store.responseItemOwners(['msg_rep']), new Map([['msg_rep', 'usr_a']]));
        await store.appendInterception(newRecord(200, { id: 'int_rep_last', responseItems: ['msg_rep'] }));
        assert.deepEqual(await store.responseItemOwners(['msg_rep']), new Map([['msg_rep', null]]));
      });

      it('keeps text a database might not: NUL, emoji, long prompts, nested values', async () => {
        const rec = newRecord(1, {
          prompt: `a\u0000b 🦀 ${'x'.repeat(70_000)}`,
          toolCalls: [
            {
              id: 'call_1',
              name: 'Bash',
              server: null,
              input: { cmd: 'ls', deep: [1, 2.5, { z: null, a: 'é' }] },
              injected: false,
              at: new Date(T0).toISOString(),
            },
          ],
        });
        const stored = await store.appendInterception(rec);
        const back = await all(store.scanInterceptions({}));
        assert.deepEqual(back[0], stored);
        assert.equal(back[0]!.hash, chainHash(back[0]!.prevHash!, back[0]!));
      });

      it('keeps strings a member chose with NUL or a lone surrogate, and finds them by those filters', async () => {
        // A session id, a tool call id, a tool name: one such character must not fail the write
        // (on a database, the whole batch of other users' records with it).
        const odd = newRecord(2, {
          sessionId: 'ses\u0000x\ud800',
          client: 'cli\u0000ent',
          prompt: 'p\u0000 \udfff',
          toolCalls: [
            {
              id: 'call_\u0000a',
              name: 'Ba\u0000sh\ud800',
              server: null,
              input: { cmd: '\u0000' },
              injected: false,
              at: new Date(T0).toISOString(),
            },
          ],
          toolResults: [{ callId: 'call_\u0000a', isError: true, content: null, contentLength: 3 }],
        });
        const results = await Promise.all(
          [newRecord(1), odd, newRecord(3)].map((r) => store.appendInterception(r)),
        );
        const back = await all(store.scanInterceptions({}));
        assert.deepEqual(back, results);
        for (const r of back) assert.equal(r.hash, chainHash(r.prevHash!, r));
        const bySession = await store.listInterceptions({ sessionId: 'ses\u0000x\ud800' }, 10);
        assert.deepEqual(
          bySession.items.map((r) => r.id),
          [odd.id],
        );
      });

      it('pages newest first with opaque cursors, and filters', async () => {
        await appendMany(store, 25);
        const seen: number[] = [];
        let cursor: string | undefined;
        for (;;) {
          const page = await store.listInterceptions({}, 10, cursor);
          seen.push(...page.items.map((r) => r.seq));
          if (page.nextCursor === null) break;
          cursor = page.nextCursor;
        }
        assert.deepEqual(
          seen,
          Array.from({ length: 25 }, (_, i) => 25 - i),
        );
        const exact = await store.listInterceptions({}, 25);
        assert.equal(exact.items.length, 25);
        assert.equal(exact.nextCursor, null, 'no next page when the last one is exactly full');

        const ids = async (f: Parameters<Store['listInterceptions']>[0]): Promise<number[]> =>
          (await store.listInterceptions(f, 100)).items.map((r) => r.seq);
        const expect = (pred: (i: number) => boolean): number[] =>
          Array.from({ length: 25 }, (_, i) => 24 - i)
            .filter(pred)
            .map((i) => i + 1);
        assert.deepEqual(
          await ids({ userId: 'usr_a' }),
          expect((i) => i % 2 === 0),
        );
        assert.deepEqual(
          await ids({ team: 'red' }),
          expect((i) => i % 2 === 0),
        );
        assert.deepEqual(
          await ids({ provider: 'openai' }),
          expect((i) => i % 3 === 0),
        );
        assert.deepEqual(
          await ids({ api: 'messages' }),
          expect((i) => i % 3 !== 0),
        );
        assert.deepEqual(
          await ids({ model: 'gpt-5' }),
          expect((i) => i % 3 === 0),
        );
        assert.deepEqual(
          await ids({ client: 'claude-code' }),
          expect(() => true),
        );
        assert.deepEqual(await ids({ client: 'codex' }), []);
        assert.deepEqual(
          await ids({ sessionId: 'ses_1' }),
          expect((i) => i % 4 === 1),
        );
        assert.deepEqual(
          await ids({ status: 'error' }),
          expect((i) => i % 5 === 4),
        );
        assert.deepEqual(
          await ids({
            since: new Date(T0 + 10 * 60_000).toISOString(),
            until: new Date(T0 + 15 * 60_000).toISOString(),
          }),
          expect((i) => i >= 10 && i < 15),
        );
        assert.deepEqual(
          await ids({ q: 'RUST' }),
          expect((i) => i % 2 === 0),
        );
        assert.deepEqual(await ids({ q: '50%' }), [], 'LIKE wildcards are literal');
        assert.deepEqual(
          await ids({ userId: 'usr_b', provider: 'openai' }),
          expect((i) => i % 2 === 1 && i % 3 === 0),
        );

        // Cursors carry the filter's position too.
        const first = await store.listInterceptions({ userId: 'usr_a' }, 4);
        const second = await store.listInterceptions({ userId: 'usr_a' }, 4, first.nextCursor!);
        assert.deepEqual(
          [...first.items, ...second.items].map((r) => r.seq),
          expect((i) => i % 2 === 0).slice(0, 8),
        );
        const textPage = await store.listInterceptions({ q: 'go' }, 3);
        const textNext = await store.listInterceptions({ q: 'go' }, 3, textPage.nextCursor!);
        assert.deepEqual(
          [...textPage.items, ...textNext.items].map((r) => r.seq),
          expect((i) => i % 2 === 1).slice(0, 6),
        );
      });

      it('refuses a malformed cursor with invalid_cursor', async () => {
        await assert.rejects(store.listInterceptions({}, 10, 'not-a-cursor'), { code: 'invalid_cursor' });
      });

      it('filters by tool name and links tool calls to results reported later', async () => {
        const at = new Date(T0).toISOString();
        await store.appendInterception(
          newRecord(0, {
            toolCalls: [
              { id: 'call_1', name: 'Bash', server: null, input: {}, injected: false, at },
              { id: 'call_2', name: 'mcp__gh__search', server: 'gh', input: {}, injected: false, at },
            ],
          }),
        );
        await store.appendInterception(newRecord(1));
        await store.appendInterception(
          newRecord(2, {
            toolResults: [{ callId: 'call_1', isError: true, content: null, contentLength: 3 }],
          }),
        );
        assert.deepEqual(
          (await store.listInterceptions({ tool: 'mcp__gh__search' }, 10)).items.map((r) => r.seq),
          [1],
        );
        assert.deepEqual((await store.listInterceptions({ tool: 'Read' }, 10)).items, []);
        // A NUL in a member's tool name makes it no other name (the embedded index joins names on NUL).
        await store.appendInterception(
          newRecord(3, {
            toolCalls: [
              { id: 'call_3', name: 'Edit\u0000Write', server: null, input: {}, injected: false, at },
            ],
          }),
        );
        for (const tool of ['Edit', 'Write'])
          assert.deepEqual((await store.listInterceptions({ tool }, 10)).items, [], tool);
        // Its own name finds it, on both stores alike (NUL dropped, as PostgreSQL's text drops it).
        for (const tool of ['Edit\u0000Write', 'EditWrite'])
          assert.deepEqual(
            (await store.listInterceptions({ tool }, 10)).items.map((r) => r.seq),
            [4],
            JSON.stringify(tool),
          );
        const rec = await store.getInterception('int_000000');
        assert.deepEqual(rec?.toolCalls[0]?.result, {
          at: newRecord(2).startedAt,
          isError: true,
          interceptionId: 'int_000002',
        });
        assert.equal(rec?.toolCalls[1]?.result, null);
        const listed = (await store.listInterceptions({ tool: 'Bash' }, 10)).items[0];
        assert.equal(listed?.toolCalls[0]?.result?.interceptionId, 'int_000002');
      });

      it('matches a tool name whatever its letter case, whole names only', async () => {
        const call = (name: string) => toolCallNamed(name, new Date(T0).toISOString());
        // Claude Code's built-ins are capitalised; other agents name theirs in lower case.
        await store.appendInterception(newRecord(0, { toolCalls: [call('Bash'), call('Read')] }));
        await store.appendInterception(newRecord(1, { toolCalls: [call('bash')] }));
        await store.appendInterception(newRecord(2, { toolCalls: [call('Édit')] }));
        await store.appendInterception(newRecord(3, { toolCalls: [call('ｓｈｅｌｌ')] }));
        const seqs = async (tool: string) =>
          (await store.listInterceptions({ tool }, 10)).items.map((r) => r.seq).sort((a, b) => a - b);
        for (const tool of ['bash', 'BASH', 'Bash', 'bAsH']) assert.deepEqual(await seqs(tool), [1, 2], tool);
        for (const tool of ['read', 'READ']) assert.deepEqual(await seqs(tool), [1], tool);
        // Beyond ASCII, and a fullwidth spelling, folded as the text search folds them.
        for (const tool of ['édit', 'ÉDIT']) assert.deepEqual(await seqs(tool), [3], tool);
        for (const tool of ['shell', 'SHELL', 'Ｓｈｅｌｌ']) assert.deepEqual(await seqs(tool), [4], tool);
        for (const tool of ['rea', 'bas', 'Bash ', 'edit'])
          assert.deepEqual(await seqs(tool), [], JSON.stringify(tool));
        // The filter on a scan and a user's records too.
        const scanned: number[] = [];
        for await (const r of store.scanInterceptions({ tool: 'BASH', userId: 'usr_b' })) scanned.push(r.seq);
        assert.deepEqual(scanned, [2]);
      });

      it("links a tool result only to its own user's call: another member sending the same call id changes nothing", async () => {
        const at = new Date(T0).toISOString();
        // A Gemini call once recorded by its tool's name: an id anyone can send a result for.
        const call = {
          id: 'run_shell_command',
          name: 'run_shell_command',
          server: null,
          input: {},
          injected: false,
          at,
        };
        await store.appendInterception(newRecord(0, { toolCalls: [call] }));
        await store.appendInterception(
          newRecord(1, {
            toolResults: [{ callId: 'run_shell_command', isError: true, content: null, contentLength: 3 }],
          }),
        );
        assert.equal((await store.getInterception('int_000000'))?.toolCalls[0]?.result, null);
        await store.appendInterception(
          newRecord(2, {
            toolResults: [{ callId: 'run_shell_command', isError: false, content: null, contentLength: 3 }],
          }),
        );
        await store.appendInterception(
          newRecord(3, {
            toolResults: [{ callId: 'run_shell_command', isError: true, content: null, contentLength: 3 }],
          }),
        );
        const linked = (await store.listInterceptions({ tool: 'run_shell_command' }, 10)).items[0];
        assert.deepEqual(linked?.toolCalls[0]?.result, {
          at: newRecord(2).startedAt,
          isError: false,
          interceptionId: 'int_000002',
        });
      });

      it('text search ignores characters that show as nothing, in the prompt and in the term', async () => {
        // Each reads "the CONFIDENTIAL roadmap" to a person.
        const prompts = [
          'the CONFIDENTIAL roadmap',
          'the CONFI\u200BDENTIAL roadmap',
          'the CONFI\u00ADDENTIAL roadmap',
          'the CON\u2060FIDEN\uFEFFTIAL roadmap',
          'the CONFIDENTIAL\u200D roadmap',
          'nothing to see',
          // Tag characters hide ASCII text ("ASCII smuggling"); a direction override flips it.
          'the CONFI\u{E0020}DENTIAL roadmap \u202Eevil',
        ];
        for (const [i, prompt] of prompts.entries()) await store.appendInterception(newRecord(i, { prompt }));
        const found = async (q: string): Promise<number[]> =>
          (await store.listInterceptions({ q }, 20)).items.map((r) => r.seq).sort((a, b) => a - b);
        assert.deepEqual(await found('confidential'), [1, 2, 3, 4, 5, 7]);
        assert.deepEqual(await found('confi\u200Bdential roadmap'), [1, 2, 3, 4, 5, 7]);
        assert.deepEqual(
          (await all(store.scanInterceptions({ q: 'CONFIDENTIAL' }))).map((r) => r.seq),
          [1, 2, 3, 4, 5, 7],
        );
        // A term made only of such characters looks for them as stored (not for everything).
        assert.deepEqual(await found('\u202E'), [7]);
        assert.deepEqual(await found('\u200B'), [2]);
        // The records themselves are kept exactly as sent.
        assert.equal((await store.getInterception('int_000001'))?.prompt, prompts[1]);
      });

      it('text search folds case in every script and compatibility forms, whatever the database collation', async () => {
        // Each pair reads the same to a person; the stores' search must not tell them apart.
        const prompts = [
          'Été à Paris',
          'the ＣＯＮＦＩＤＥＮＴＩＡＬ roadmap',
          'cafe\u0301 order for Ωmega',
          'a café order',
          'ﬁnance numbers',
          'nothing to see',
        ];
        for (const [i, prompt] of prompts.entries()) await store.appendInterception(newRecord(i, { prompt }));
        const found = async (q: string): Promise<number[]> =>
          (await store.listInterceptions({ q }, 20)).items.map((r) => r.seq).sort((a, b) => a - b);
        assert.deepEqual(await found('été'), [1]);
        assert.deepEqual(await found('ÉTÉ À PARIS'), [1]);
        assert.deepEqual(await found('confidential'), [2]);
        assert.deepEqual(await found('café'), [3, 4], 'composed finds decomposed');
        assert.deepEqual(await found('cafe\u0301'), [3, 4], 'decomposed finds composed');
        assert.deepEqual(await found('ωMEGA'), [3]);
        assert.deepEqual(await found('finance'), [5]);
        assert.deepEqual(
          (await all(store.scanInterceptions({ q: 'Café' }))).map((r) => r.seq),
          [3, 4],
        );
        // The records themselves are kept exactly as sent.
        assert.equal((await store.getInterception('int_000001'))?.prompt, prompts[1]);
      });

      it('scans oldest first, filtered, exactly as stored', async () => {
        const stored = await appendMany(store, 30);
        const scanned = await all(store.scanInterceptions({}));
        assert.deepEqual(scanned, stored);
        const mine = await all(store.scanInterceptions({ userId: 'usr_b', q: 'go' }));
        assert.deepEqual(
          mine.map((r) => r.seq),
          stored.filter((r) => r.userId === 'usr_b').map((r) => r.seq),
        );
      });
    });

    describe('audit chain', () => {
      it('links every record to the one before, from the genesis, in append order', async () => {
        const stored = await appendMany(store, 40);
        const sorted = [...stored].sort((a, b) => a.seq - b.seq);
        assert.equal(sorted[0]!.prevHash, GENESIS);
        for (let i = 1; i < sorted.length; i++) assert.equal(sorted[i]!.prevHash, sorted[i - 1]!.hash);
        const head = await store.chainHead();
        assert.deepEqual(head, { seq: 40, hash: sorted.at(-1)!.hash });
        const report = await verifyChain(store.scanInterceptions({}), head);
        assert.deepEqual(report, {
          ok: true,
          checked: 40,
          anchor: GENESIS,
          firstBreak: null,
          head,
          newest: head,
          truncated: null,
        });
        await restart();
        assert.deepEqual(await store.chainHead(), head, 'the head survives a restart');
        await appendMany(store, 3, 40);
        const after = await verifyChain(store.scanInterceptions({}), await store.chainHead());
        assert.equal(after.checked, 43);
        assert.equal(after.ok, true);
        assert.equal((await store.chainHead()).seq, 43);
      });

      it('keeps a chain head that starts empty and moves with every durable append', async () => {
        assert.deepEqual(await store.chainHead(), { seq: 0, hash: GENESIS });
        const [one] = await appendMany(store, 1);
        assert.deepEqual(await store.chainHead(), { seq: one!.seq, hash: one!.hash });
      });

      it('prunes a prefix of the chain: newer records stay and the rest still verifies', async () => {
        // As at start-up: where the chain starts, stored before any record.
        await claimChainAnchor(store);
        const stored = await appendMany(store, 60);
        // Records append in the order requests finish, not start: one old-started record late in the order.
        const late = await store.appendInterception(
          newRecord(1000, { startedAt: new Date(T0).toISOString() }),
        );
        const before = new Date(T0 + 40 * 60_000).toISOString();
        const dropped = await store.pruneInterceptions(before);
        const kept = await all(store.scanInterceptions({}));
        assert.equal(dropped + kept.length, 61, 'prune reports what it deleted');
        assert.ok(dropped > 0 && dropped <= 40, `dropped ${dropped}`);
        for (const r of stored.filter((x) => x.startedAt >= before))
          assert.ok(
            kept.some((k) => k.id === r.id),
            `record ${r.seq} started after the cutoff and must be kept`,
          );
        assert.ok(
          kept.some((k) => k.id === late.id),
          'a record after a kept one is kept',
        );
        // Checked against the start the prune moved (records deleted past it would be a break).
        const report = await verifyStoredChain(store);
        assert.equal(report.ok, true, JSON.stringify(report));
        assert.equal(report.truncated, null, 'pruned records are not reported missing');
        assert.equal(report.anchor, kept[0]!.prevHash);
        assert.deepEqual(parseAnchor(await store.getSetting('chain_anchor')), {
          afterSeq: kept[0]!.seq - 1,
          hash: kept[0]!.prevHash,
        });
        assert.equal(await store.pruneInterceptions(new Date(T0 - 1).toISOString()), 0);
      });

      it('prunes everything it may and the chain still verifies against its head', async () => {
        await claimChainAnchor(store);
        await appendMany(store, 60);
        await store.pruneInterceptions(new Date(T0 + 1000 * 60_000).toISOString());
        const head = await store.chainHead();
        assert.equal(head.seq, 60);
        const report = await verifyStoredChain(store);
        assert.equal(report.ok, true, JSON.stringify(report));
        await restart();
        assert.equal((await verifyStoredChain(store)).ok, true);
      });

      it('claims where the chain starts once, from what it holds on that first start', async () => {
        const [one] = await appendMany(store, 3);
        await claimChainAnchor(store);
        assert.deepEqual(parseAnchor(await store.getSetting('chain_anchor')), {
          afterSeq: one!.seq - 1,
          hash: one!.prevHash,
        });
        await appendMany(store, 2);
        await claimChainAnchor(store);
        assert.equal(
          parseAnchor(await store.getSetting('chain_anchor'))?.afterSeq,
          one!.seq - 1,
          'not moved again',
        );
        assert.equal((await verifyStoredChain(store)).ok, true);
      });
    });

    describe('settings', () => {
      it('keeps the first value claimed, across restarts, and returns it to every later claim', async () => {
        assert.equal(await store.claimSetting('key_hash_verifier', 'first'), 'first');
        assert.equal(await store.claimSetting('key_hash_verifier', 'second'), 'first');
        await restart();
        assert.equal(await store.claimSetting('key_hash_verifier', 'third'), 'first');
      });
    });

    describe('usage rollups', () => {
      it('sums records per hour, user, provider, model and client as they are appended', async () => {
        await appendMany(store, 150);
        await store.appendInterception(
          newRecord(150, {
            model: null,
            usage: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, reasoning: 0 },
          }),
        );
        const check = async (s: Store): Promise<void> => {
          const buckets = await s.usageBuckets({});
          assert.equal(
            buckets.reduce((n, b) => n + b.requests, 0),
            151,
          );
          const a = buckets.filter((b) => b.userId === 'usr_a' && b.provider === 'anthropic');
          const recs = Array.from({ length: 150 }, (_, i) => newRecord(i)).filter(
            (r) => r.userId === 'usr_a' && r.provider === 'anthropic',
          );
          assert.equal(
            a.reduce((n, b) => n + b.requests, 0),
            recs.length,
          );
          assert.equal(
            a.reduce((n, b) => n + b.usage.input, 0),
            recs.reduce((n, r) => n + r.usage.input, 0),
          );
          const cost = a.reduce((n, b) => n + b.costUsd, 0);
          const want = recs.reduce((n, r) => n + (r.costUsd ?? 0), 0);
          assert.ok(Math.abs(cost - want) < 1e-9, `${cost} vs ${want}`);
          assert.equal(
            a.reduce((n, b) => n + b.unpricedRequests, 0),
            recs.filter((r) => r.costUsd === null).length,
          );
          const first = buckets.find(
            (b) => b.hour === '2026-03-02T10:00:00.000Z' && b.userId === 'usr_a' && b.provider === 'openai',
          );
          assert.deepEqual(first && { ...first, costUsd: Math.round(first.costUsd * 1e9) / 1e9 }, {
            hour: '2026-03-02T10:00:00.000Z',
            userId: 'usr_a',
            userEmail: 'a@example.com',
            team: 'red',
            provider: 'openai',
            model: 'gpt-5',
            client: 'claude-code',
            requests: 10,
            usage: {
              input: 100 * 10 + (0 + 6 + 12 + 18 + 24 + 30 + 36 + 42 + 48 + 54),
              output: 100,
              cacheRead: 50,
              cacheWrite: 10,
              reasoning: 0,
            },
            // i = 6 and 48 have no price (i % 7 === 6): in no sum, counted apart.
            costUsd: Math.round(0.001 * (1 + 13 + 19 + 25 + 31 + 37 + 43 + 55) * 1e9) / 1e9,
            unpricedRequests: 2,
            userBilledCostUsd: 0,
            userBilledRequests: 0,
          });
          const nullModel = buckets.filter((b) => b.model === null);
          assert.equal(nullModel.length, 1, 'a record without a model has a bucket of its own');
          // Windows select whole hours; since is widened down to its hour.
          const hour2 = await s.usageBuckets({
            since: '2026-03-02T11:30:00.000Z',
            until: '2026-03-02T12:00:00.000Z',
          });
          assert.ok(hour2.length > 0);
          assert.ok(hour2.every((b) => b.hour === '2026-03-02T11:00:00.000Z'));
          assert.equal(
            hour2.reduce((n, b) => n + b.requests, 0),
            60,
          );
          const red = await s.usageBuckets({ team: 'red' });
          assert.ok(red.every((b) => b.userId === 'usr_a'));
          assert.equal(
            (await s.usageBuckets({ userId: 'usr_b' })).reduce((n, b) => n + b.requests, 0),
            75,
          );
        };
        await check(store);
        await check(await restart());
      });

      it("keeps the cost of requests billed to the user apart from the organisation's", async () => {
        // Records 0, 2 and 4 are usr_a's on anthropic in one hour; 2 and 4 went with the user's own key.
        await store.appendInterception(newRecord(0, { provider: 'anthropic', model: 'm', costUsd: 0.5 }));
        for (const i of [2, 4])
          await store.appendInterception(
            newRecord(i, { provider: 'anthropic', model: 'm', costUsd: 0.25, billedTo: 'user' }),
          );
        const check = async (s: Store): Promise<void> => {
          const [b, ...rest] = await s.usageBuckets({ userId: 'usr_a' });
          assert.equal(rest.length, 0);
          assert.ok(b);
          assert.equal(b.requests, 3);
          assert.equal(b.costUsd, 0.5, "the organisation's cost leaves the user's out");
          assert.equal(b.userBilledCostUsd, 0.5);
          assert.equal(b.userBilledRequests, 2);
          const rec = await s.getInterception(newRecord(2).id);
          assert.equal(rec?.billedTo, 'user', 'the record keeps who paid');
        };
        await check(store);
        await check(await restart());
      });

      it("keeps each user's newest request time, whatever order records arrive in", async () => {
        assert.deepEqual(await store.lastRequestAt(), new Map());
        // One user's records in one batch, newest in the middle; another's newest appended first.
        await Promise.all([10, 20, 14].map((i) => store.appendInterception(newRecord(i))));
        await store.appendInterception(newRecord(7, { startedAt: '2026-03-05T08:00:00.123Z' }));
        await store.appendInterception(newRecord(9));
        await store.appendInterception(newRecord(24));
        const want = new Map([
          ['usr_a', newRecord(24).startedAt],
          ['usr_b', '2026-03-05T08:00:00.123Z'],
        ]);
        assert.deepEqual(await store.lastRequestAt(), want);
        assert.deepEqual(await (await restart()).lastRequestAt(), want);
      });
    });

    describe('documents, alerts and the access log', () => {
      it('puts, replaces, lists by kind and deletes documents', async () => {
        await store.putDoc('budget', 'b1', { id: 'b1', limitUsd: 5 });
        await store.putDoc('budget', 'b2', { id: 'b2', limitUsd: 7 });
        await store.putDoc('price', 'p1', { model: 'x' });
        await store.putDoc('budget', 'b1', { id: 'b1', limitUsd: 6 });
        assert.deepEqual(await store.listDocs('budget'), [
          { id: 'b1', limitUsd: 6 },
          { id: 'b2', limitUsd: 7 },
        ]);
        assert.deepEqual(await store.getDoc('budget', 'b1'), { id: 'b1', limitUsd: 6 });
        assert.equal(await store.getDoc('budget', 'p1'), undefined, 'ids are per kind');
        assert.equal(await store.getDoc('budget', 'toString'), undefined);
        assert.equal(await store.deleteDoc('budget', 'b2'), true);
        assert.equal(await store.deleteDoc('budget', 'b2'), false);
        await restart();
        assert.deepEqual(await store.listDocs('budget'), [{ id: 'b1', limitUsd: 6 }]);
        assert.equal(await store.getDoc('budget', 'b2'), undefined);
        assert.deepEqual(await store.listDocs('price'), [{ model: 'x' }]);
        assert.deepEqual(await store.listDocs('rate_limit'), []);
      });

      it('keeps documents under any id a name can be, __proto__ and constructor included', async () => {
        assert.equal(await store.deleteDoc('team_capture', 'constructor'), false, 'nothing stored there');
        for (const id of ['__proto__', 'constructor', 'hasOwnProperty'])
          await store.putDoc('team_capture', id, { team: id, level: 'none' });
        await restart();
        for (const id of ['__proto__', 'constructor', 'hasOwnProperty'])
          assert.deepEqual(await store.getDoc('team_capture', id), { team: id, level: 'none' }, id);
        assert.equal((await store.listDocs('team_capture')).length, 3);
        assert.equal(await store.deleteDoc('team_capture', '__proto__'), true);
        assert.equal(await store.getDoc('team_capture', '__proto__'), undefined);
        assert.equal((await store.listDocs('team_capture')).length, 2);
      });

      it('keeps the tool policy as one document, and the policy marks on tool calls', async () => {
        const metrics = { toolPolicyDecisions: { inc: () => undefined } };
        const now = (): Date => new Date(T0);
        const policy = new ToolPolicy(store, metrics as never, now);
        await policy.load();
        assert.deepEqual(policy.get(), { rules: [], updatedAt: null });
        const rules = [
          { id: 'a', tool: 'Bash', argumentPattern: 'rm -rf', action: 'deny', scope: 'org' },
          { id: 'b', tool: '*', action: 'audit', scope: 'team', subject: 'red', enabled: false },
        ];
        await policy.put(rules);
        await policy.put([rules[1]]);
        await policy.put(rules);
        await restart();
        const again = new ToolPolicy(store, metrics as never, now);
        await again.load();
        assert.deepEqual(again.get(), { rules, updatedAt: new Date(T0).toISOString() });
        assert.equal((await store.listDocs('tool_policy')).length, 1, 'one document, replaced whole');

        const at = new Date(T0).toISOString();
        await store.appendInterception(
          newRecord(0, {
            toolCalls: [
              {
                id: 'c1',
                name: 'Bash',
                server: null,
                input: {},
                injected: false,
                at,
                policy: { rule: 'a', action: 'deny' },
              },
              { id: 'c2', name: 'Read', server: null, input: {}, injected: false, at },
            ],
          }),
        );
        const rec = await store.getInterception('int_000000');
        assert.deepEqual(rec?.toolCalls[0]?.policy, { rule: 'a', action: 'deny' });
        assert.equal(rec?.toolCalls[1]?.policy, undefined);
      });

      it('lists alerts newest first, by time and user, up to a limit', async () => {
        for (let i = 0; i < 12; i++) await store.appendAlert(alert(i));
        assert.deepEqual(
          (await store.listAlerts({ limit: 3 })).map((a) => a.id),
          ['alr_11', 'alr_10', 'alr_9'],
        );
        assert.deepEqual(
          (await store.listAlerts({ limit: 100, since: alert(8).at })).map((a) => a.id),
          ['alr_11', 'alr_10', 'alr_9', 'alr_8'],
        );
        assert.deepEqual(
          (await store.listAlerts({ limit: 3, userId: 'usr_a' })).map((a) => a.id),
          ['alr_10', 'alr_8', 'alr_6'],
        );
        await restart();
        assert.deepEqual(await store.listAlerts({ limit: 1 }), [alert(11)]);
      });

      it('leaves rules out of an alert list before its limit counts (a member’s list)', async () => {
        await store.appendAlert(alert(0));
        for (let i = 2; i < 8; i += 2)
          await store.appendAlert(alert(i, { kind: 'anomaly', rule: 'spend_vs_team' }));
        assert.deepEqual(
          (await store.listAlerts({ limit: 1, userId: 'usr_a', exceptRules: ['spend_vs_team'] })).map(
            (a) => a.id,
          ),
          ['alr_0'],
          'the older alert the member may read, not an empty page',
        );
        assert.equal((await store.listAlerts({ limit: 10, userId: 'usr_a' })).length, 4);
      });

      it('lists the access log newest first, since a time, up to a limit', async () => {
        const entry = (n: number): AccessLogEntry => ({
          id: `acc_${n}`,
          at: new Date(T0 + n * 1000).toISOString(),
          adminId: 'usr_admin',
          adminEmail: 'admin@example.com',
          route: 'GET /api/v1/interceptions',
          subjectUserId: n % 2 === 0 ? 'usr_a' : null,
          query: { user: 'a@example.com' },
        });
        for (let i = 0; i < 6; i++) await store.appendAccessLog(entry(i));
        assert.deepEqual(await store.listAccessLog({ limit: 2 }), [entry(5), entry(4)]);
        assert.deepEqual(
          (await store.listAccessLog({ limit: 10, since: entry(3).at })).map((e) => e.id),
          ['acc_5', 'acc_4', 'acc_3'],
        );
        await restart();
        assert.equal((await store.listAccessLog({ limit: 10 })).length, 6);
      });

      it('lists MCP gateway calls newest first, filtered by user, server, name and time', async () => {
        const call = (n: number): GatewayToolCall => ({
          id: `gwc_${n}`,
          at: new Date(T0 + n * 1000).toISOString(),
          userId: n % 2 === 0 ? 'usr_a' : 'usr_b',
          userEmail: n % 2 === 0 ? 'a@example.com' : 'b@example.com',
          team: null,
          keyId: 'key_1',
          client: 'claude-code',
          sessionId: null,
          name: n % 3 === 0 ? 'docs__search' : 'github__get_issue',
          server: n % 3 === 0 ? 'docs' : 'github',
          tool: n % 3 === 0 ? 'search' : 'get_issue',
          input: { q: `n${n}` },
          outcome: 'ok',
          durationMs: n,
          resultBytes: 10,
          error: null,
        });
        for (let i = 0; i < 6; i++) await store.appendGatewayCall(call(i));
        const ids = async (q: Partial<GatewayCallQuery>): Promise<string[]> =>
          (await store.listGatewayCalls({ limit: 10, ...q })).map((c) => c.id);
        assert.deepEqual(await store.listGatewayCalls({ limit: 2 }), [call(5), call(4)]);
        assert.deepEqual(await ids({ userId: 'usr_a' }), ['gwc_4', 'gwc_2', 'gwc_0']);
        assert.deepEqual(await ids({ server: 'docs' }), ['gwc_3', 'gwc_0']);
        assert.deepEqual(await ids({ name: 'github__get_issue', since: call(2).at, until: call(5).at }), [
          'gwc_4',
          'gwc_2',
        ]);
        await restart();
        assert.equal((await store.listGatewayCalls({ limit: 10 })).length, 6);
      });

      it('scans gateway calls oldest first, exactly as stored, and prunes the old ones (retention)', async () => {
        const call = (n: number): GatewayToolCall => ({
          id: `gws_${n}`,
          at: new Date(T0 + n * 60_000).toISOString(),
          userId: n % 4 === 1 ? 'usr_b' : 'usr_a',
          userEmail: 'a@example.com',
          team: 'red',
          keyId: 'key_1',
          client: 'claude-code',
          sessionId: null,
          name: 'docs__search',
          server: 'docs',
          tool: 'search',
          // Enough bytes per call that small journal segments fill and close.
          input: { q: `n${n}`, pad: 'x'.repeat(600) },
          outcome: 'ok',
          durationMs: n,
          resultBytes: 10,
          error: null,
        });
        const scan = async (
          q: { since?: string; until?: string; userId?: string } = {},
        ): Promise<string[]> => {
          const out: string[] = [];
          for await (const c of store.scanGatewayCalls(q)) out.push(c.id);
          return out;
        };
        for (let i = 0; i < 40; i++) await store.appendGatewayCall(call(i));
        assert.deepEqual(
          await scan(),
          Array.from({ length: 40 }, (_, i) => `gws_${i}`),
        );
        const whole: GatewayToolCall[] = [];
        for await (const c of store.scanGatewayCalls({ since: call(3).at, until: call(5).at })) whole.push(c);
        assert.deepEqual(whole, [call(3), call(4)]);
        // One user's calls: a member's export reads no one else's.
        assert.deepEqual(
          await scan({ userId: 'usr_b' }),
          Array.from({ length: 10 }, (_, i) => `gws_${4 * i + 1}`),
        );
        assert.deepEqual(await scan({ userId: 'usr_b', since: call(3).at, until: call(10).at }), [
          'gws_5',
          'gws_9',
        ]);

        const before = call(30).at;
        const dropped = await store.pruneGatewayCalls(before);
        const kept = await scan();
        assert.equal(dropped + kept.length, 40, 'prune reports what it deleted');
        assert.ok(dropped > 0 && dropped <= 30, `dropped ${dropped}`);
        for (let i = 30; i < 40; i++)
          assert.ok(kept.includes(`gws_${i}`), `call ${i} is newer than the cutoff`);
        const listed = (await store.listGatewayCalls({ limit: 100 })).map((c) => c.id);
        assert.deepEqual(listed, [...kept].reverse(), 'the listing forgets what was pruned');
        assert.equal(await store.pruneGatewayCalls(new Date(T0 - 1).toISOString()), 0);
        await restart();
        assert.deepEqual(await scan(), kept);
      });
    });

    describe('budget ledgers', () => {
      const PERIOD = '2026-03-01T00:00:00.000Z';
      const claim = (over: Partial<BudgetClaim> = {}): BudgetClaim => ({
        budgetId: 'bud_1',
        periodStart: PERIOD,
        limitUsd: 1,
        block: true,
        thresholds: [0.5, 0.8, 1],
        scope: { userId: 'usr_a' },
        ...over,
      });
      const near = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-9, `${a} vs ${b}`);

      it('reserves until spent plus reserved reaches a blocking limit, then refuses without reserving', async () => {
        const c = claim();
        const alertOnly = claim({ budgetId: 'bud_2', block: false, limitUsd: 0.1 });
        for (const id of ['int_1', 'int_2', 'int_3']) {
          const r = await store.reserveBudgets(id, [c, alertOnly], 0.4);
          assert.equal(r.ok, true, `${id} is admitted`);
        }
        const refused = await store.reserveBudgets('int_4', [c, alertOnly], 0.4);
        assert.equal(refused.ok, false);
        if (!refused.ok) {
          assert.equal(refused.refusedBy.budgetId, 'bud_1');
          near(refused.refusedBy.reservedUsd, 1.2);
        }
        const [l1, l2] = await store.budgetLedgers([c, alertOnly]);
        near(l1!.reservedUsd, 1.2);
        near(l2!.reservedUsd, 1.2);
        near(l1!.spentUsd, 0);

        const settled = await store.settleBudgets('int_1', [{ ...c, costUsd: 0.55 }]);
        near(settled[0]!.ledger.spentUsd, 0.55);
        assert.equal(settled[0]!.crossed, 0.5);
        const [after] = await store.budgetLedgers([c]);
        near(after!.reservedUsd, 0.8);
        assert.equal(after!.alerted, 0.5);
        // A threshold is reported crossed once.
        const again = await store.settleBudgets('int_2', [{ ...c, costUsd: 0.01 }]);
        assert.equal(again[0]!.crossed, null);
        const big = await store.settleBudgets('int_3', [{ ...c, costUsd: 0.5 }]);
        assert.equal(big[0]!.crossed, 1, 'the highest threshold crossed');
        near(big[0]!.ledger.reservedUsd, 0);
        assert.equal((await store.reserveBudgets('int_5', [c], 0.01)).ok, false, 'spent');
        assert.equal(
          (await store.reserveBudgets('int_5', [claim({ periodStart: '2026-04-01T00:00:00.000Z' })], 0.01))
            .ok,
          true,
          'a new period starts empty',
        );
      });

      it('leases a share of the headroom (at least one estimate), counted as reserved until settled', async () => {
        const c = claim({ limitUsd: 1 });
        const sizing = { minUsd: 0.01, maxUsd: 10, share: 0.1 };
        const l1 = await store.leaseBudget('lease_1', c, sizing);
        assert.ok(l1.ok);
        near(l1.grantedUsd, 0.1);
        near(l1.ledger.reservedUsd, 0.1);
        const l2 = await store.leaseBudget('lease_2', c, { ...sizing, share: 0.5 });
        assert.ok(l2.ok);
        near(l2.grantedUsd, 0.45);
        const l3 = await store.leaseBudget('lease_3', c, { ...sizing, share: 1, maxUsd: 0.05 });
        assert.ok(l3.ok);
        near(l3.grantedUsd, 0.05); // capped
        near((await store.budgetLedgers([c]))[0]!.reservedUsd, 0.6);
        const s2 = await store.settleBudgets('lease_2', [{ ...c, costUsd: 0.2 }]);
        near(s2[0]!.ledger.spentUsd, 0.2);
        assert.equal(s2[0]!.crossed, null);
        // The unused part of lease 2 went back.
        near((await store.budgetLedgers([c]))[0]!.reservedUsd, 0.15);

        const s1 = await store.settleBudgets('lease_1', [{ ...c, costUsd: 0.4 }]);
        near(s1[0]!.ledger.spentUsd, 0.6);
        assert.equal(s1[0]!.crossed, 0.5);
        const l4 = await store.leaseBudget('lease_4', c, { ...sizing, share: 1 });
        assert.ok(l4.ok);
        near(l4.grantedUsd, 0.35); // all that is left after the settlements and lease 3
        const spent = await store.leaseBudget('lease_5', c, sizing);
        assert.equal(spent.ok, false, 'nothing left');
        if (!spent.ok) near(spent.refusedBy.spentUsd + spent.refusedBy.reservedUsd, 1);
        assert.equal((await store.reserveBudgets('int_1', [c], 0.01)).ok, false, 'per-request too');

        await store.settleBudgets('lease_4', [{ ...c, costUsd: 0.3 }]);
        const last = await store.leaseBudget('lease_6', c, { ...sizing, minUsd: 0.2 });
        assert.ok(last.ok);
        near(last.grantedUsd, 0.2); // one estimate, past the 0.05 left

        const alertOnly = claim({ budgetId: 'bud_2', block: false, limitUsd: 0.01 });
        await store.settleBudgets('x', [{ ...alertOnly, costUsd: 5 }]);
        const free = await store.leaseBudget('lease_7', alertOnly, sizing);
        assert.ok(free.ok, 'a budget that only alerts never refuses');
        near(free.grantedUsd, 0.01);
      });

      it('starts a new period from the rollups and the alerts already raised in it', async () => {
        await appendMany(store, 10);
        const want = Array.from({ length: 10 }, (_, i) => newRecord(i))
          .filter((r) => r.userId === 'usr_a')
          .reduce((n, r) => n + (r.costUsd ?? 0), 0);
        await store.appendAlert(
          alert(1, { budgetId: 'bud_1', observed: 0.85, at: '2026-03-02T00:00:00.000Z' }),
        );
        await store.appendAlert(alert(2, { budgetId: 'bud_1', observed: 5, at: '2026-02-02T00:00:00.000Z' }));
        const [l] = await store.budgetLedgers([claim()]);
        near(l!.spentUsd, want);
        assert.equal(l!.alerted, 0.8, 'alerts of earlier periods do not count');
        const [team] = await store.budgetLedgers([claim({ budgetId: 'bud_t', scope: { team: 'red' } })]);
        near(team!.spentUsd, want);
        const [org] = await store.budgetLedgers([claim({ budgetId: 'bud_o', scope: {} })]);
        near(
          org!.spentUsd,
          Array.from({ length: 10 }, (_, i) => newRecord(i)).reduce((n, r) => n + (r.costUsd ?? 0), 0),
        );
      });

      it('counts only its own period: spend and alerts stamped after its end are a later one’s', async () => {
        // Records of March (as a wall clock set a month ahead stamps them), read by February's period.
        await appendMany(store, 10);
        await store.appendAlert(
          alert(1, { budgetId: 'bud_1', observed: 0.6, at: '2026-02-10T00:00:00.000Z' }),
        );
        await store.appendAlert(alert(2, { budgetId: 'bud_1', observed: 5, at: '2026-03-02T00:00:00.000Z' }));
        const [feb] = await store.budgetLedgers([
          claim({ periodStart: '2026-02-01T00:00:00.000Z', periodEnd: PERIOD }),
        ]);
        near(feb!.spentUsd, 0);
        assert.equal(feb!.alerted, 0.5);
      });

      it('admits parallel requests atomically: at most one past the limit', async () => {
        const c = claim({ limitUsd: 1 });
        const outcomes = await Promise.all(
          Array.from({ length: 30 }, (_, i) => store.reserveBudgets(`int_${i}`, [c], 0.1)),
        );
        const ok = outcomes.filter((o) => o.ok).length;
        assert.ok(ok >= 10 && ok <= 11, `${ok} admitted`);
        near((await store.budgetLedgers([c]))[0]!.reservedUsd, ok * 0.1);
      });

      it('keeps what was settled and appended across a restart', async () => {
        const c = claim();
        assert.equal((await store.reserveBudgets('int_000000', [c], 0.2)).ok, true);
        const rec = await store.appendInterception(newRecord(0, { costUsd: 0.3 }));
        await store.settleBudgets(rec.id, [{ ...c, costUsd: 0.3 }]);
        await restart();
        const [l] = await store.budgetLedgers([c]);
        near(l!.spentUsd, 0.3);
        near(l!.reservedUsd, 0);
      });

      it('starts a session cap’s ledger from the session’s records, apart from every other session', async () => {
        await appendMany(store, 12);
        const records = Array.from({ length: 12 }, (_, i) => newRecord(i));
        const spentBy = (userId: string, sessionId: string): number =>
          records
            .filter((r) => r.userId === userId && r.sessionId === sessionId)
            .reduce((n, r) => n + (r.costUsd ?? 0), 0);
        const session = (userId: string, sessionId: string, limitUsd: number): BudgetClaim =>
          claim({
            budgetId: `bud_s#${userId}:${sessionId}`,
            periodStart: new Date(0).toISOString(),
            limitUsd,
            scope: { userId, sessionId },
          });
        const a0 = session('usr_a', 'ses_0', spentBy('usr_a', 'ses_0'));
        const a2 = session('usr_a', 'ses_2', 1);
        const [l0, l2] = await store.budgetLedgers([a0, a2]);
        near(l0!.spentUsd, spentBy('usr_a', 'ses_0'));
        near(l2!.spentUsd, spentBy('usr_a', 'ses_2'));
        assert.ok(l0!.spentUsd > 0 && l0!.spentUsd !== l2!.spentUsd);
        // The session at its cap is refused; the same user's other session is admitted.
        assert.equal((await store.reserveBudgets('int_s1', [a0], 0.001)).ok, false);
        assert.equal((await store.reserveBudgets('int_s2', [a2], 0.001)).ok, true);
        const rec = await store.appendInterception(
          newRecord(40, { id: 'int_s2', userId: 'usr_a', sessionId: 'ses_2', costUsd: 0.5 }),
        );
        await store.settleBudgets(rec.id, [{ ...a2, costUsd: 0.5 }]);
        await restart();
        const [after] = await store.budgetLedgers([a2]);
        near(after!.spentUsd, spentBy('usr_a', 'ses_2') + 0.5);
      });

      it('starts a session cap’s ledger from records that hold NUL (in their prompt and session id)', async () => {
        const sessionId = 'ses_\u0000nul';
        await store.appendInterception(
          newRecord(50, { userId: 'usr_a', sessionId, costUsd: 0.25, prompt: 'a\u0000b' }),
        );
        await store.appendInterception(newRecord(52, { userId: 'usr_a', sessionId, costUsd: 0.5 }));
        const cap = claim({
          budgetId: 'bud_s#0123456789abcdef01234567',
          periodStart: new Date(0).toISOString(),
          limitUsd: 1,
          scope: { userId: 'usr_a', sessionId },
        });
        const [ledger] = await store.budgetLedgers([cap]);
        near(ledger!.spentUsd, 0.75);
        assert.equal((await store.reserveBudgets('int_n1', [cap], 0.1)).ok, true);
      });
    });

    it('keeps a record’s cache fingerprint and cache break', async () => {
      const rec = newRecord(0, {
        cacheKey: { mode: 'explicit', tools: 'a1', system: 'b2', messages: 3, prefix: 'c3', ttlSeconds: 300 },
        cacheBreak: {
          cause: 'tools_changed',
          excessUsd: 0.07,
          tokens: 22_000,
          previousInterceptionId: 'int_x',
        },
      });
      await store.appendInterception(rec);
      await restart();
      const got = await store.getInterception(rec.id);
      assert.deepEqual(got?.cacheKey, rec.cacheKey);
      assert.deepEqual(got?.cacheBreak, rec.cacheBreak);
    });

    it('appends concurrently without gaps or forks in the chain', async () => {
      const stored = await appendMany(store, 300);
      assert.deepEqual(
        stored.map((r) => r.seq).sort((a, b) => a - b),
        Array.from({ length: 300 }, (_, i) => i + 1),
      );
      assert.equal((await verifyChain(store.scanInterceptions({}))).ok, true);
    });
  });
}
