import assert from 'node:assert/strict';
import { ResponseOwners } from '../../server/audit/response-owners';
import type { Principal } from '../../server/core/principal';
import { isBridgeError } from '../../server/errors';
import type { NewInterception } from '../../server/store/types';
import { newRecord } from '../store/contract';

function principal(id: string, role: 'member' | 'admin' = 'member'): Principal {
  return { user: { id, role } } as unknown as Principal;
}

/** A store that answers from `owners` and counts its lookups. */
function fakeStore(owners: Record<string, string | null> = {}) {
  const asked: string[][] = [];
  return {
    asked,
    responseOwner: async () => undefined,
    responseItemOwners: async (ids: readonly string[]) => {
      asked.push([...ids]);
      return new Map(ids.filter((id) => owners[id] !== undefined).map((id) => [id, owners[id] ?? null]));
    },
  };
}

async function refusal(run: () => void | Promise<void>): Promise<string | undefined> {
  try {
    await run();
    return undefined;
  } catch (err) {
    assert.ok(isBridgeError(err), String(err));
    return `${err.code} ${err.message}`;
  }
}

describe('ResponseOwners: stored output items', () => {
  const rec = (over: Partial<NewInterception>): NewInterception => ({
    ...newRecord(0),
    userId: 'usr_a',
    ...over,
  });

  it("knows a finished record's items without the store; another's, unknown or foreign, are refused as OpenAI's unknown item", async () => {
    const store = fakeStore();
    const owners = new ResponseOwners(store);
    owners.note(rec({ responseId: 'resp_1', responseItems: ['msg_1', 'rs_1'] }));
    assert.equal(await refusal(() => owners.checkItems(['msg_1', 'rs_1'], principal('usr_a'))), undefined);
    assert.deepEqual(store.asked, [], 'memory answered');
    assert.equal(
      await refusal(() => owners.checkItems(['rs_1'], principal('usr_b'))),
      "item_not_found Item with id 'rs_1' not found.",
    );
    assert.equal(
      await refusal(() => owners.checkItems(['rs_1'], principal('usr_admin', 'admin'))),
      "item_not_found Item with id 'rs_1' not found.",
      "an admin cannot name another user's item",
    );
    assert.equal(
      await refusal(() => owners.checkItems(['msg_9'], principal('usr_a'))),
      "item_not_found Item with id 'msg_9' not found.",
    );
    assert.equal(
      await refusal(() => owners.checkItems(['msg_9'], principal('usr_admin', 'admin'))),
      undefined,
    );
    assert.equal(
      await refusal(() => owners.checkItems(['x'.repeat(257)], principal('usr_admin', 'admin'))),
      undefined,
    );
  });

  it('looks up every id memory does not know in one store call, and remembers what it found', async () => {
    const store = fakeStore({ msg_2: 'usr_a', msg_3: 'usr_b' });
    const owners = new ResponseOwners(store);
    owners.note(rec({ responseItems: ['msg_1'] }));
    assert.equal(
      await refusal(() => owners.checkItems(['msg_1', 'msg_2', 'msg_3'], principal('usr_a'))),
      "item_not_found Item with id 'msg_3' not found.",
    );
    assert.deepEqual(store.asked, [['msg_2', 'msg_3']]);
    assert.equal(await refusal(() => owners.checkItems(['msg_2'], principal('usr_a'))), undefined);
    assert.equal(store.asked.length, 1, 'found once, then known');
    // An id longer than any recorded is never looked up.
    await refusal(() => owners.checkItems(['y'.repeat(257)], principal('usr_a')));
    assert.equal(store.asked.length, 1);
  });

  it("an item two users' answers hold is nobody's, the first owner's included, from memory, another replica or the store", async () => {
    const owners = new ResponseOwners(fakeStore({ msg_9: null }));
    owners.note(rec({ responseItems: ['msg_1'] }));
    owners.note(rec({ userId: 'usr_b', responseItems: ['msg_1'] }));
    owners.heard('resp_5', 'usr_a', ['msg_2']);
    owners.heard('resp_6', 'usr_b', ['msg_2']);
    for (const id of ['msg_1', 'msg_2'])
      for (const who of [principal('usr_a'), principal('usr_b'), principal('usr_admin', 'admin')])
        assert.match(String(await refusal(() => owners.checkItems([id], who))), /item_not_found/);
    assert.match(
      String(await refusal(() => owners.checkItems(['msg_9'], principal('usr_admin', 'admin')))),
      /item_not_found/,
    );
  });

  it("looks a member's unknown ids up 64 at a time, stopping at the first chunk that refuses one", async () => {
    const mine = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`msg_${i}`, 'usr_a']));
    const store = fakeStore({ ...mine, msg_70: 'usr_b' });
    const owners = new ResponseOwners(store);
    const ids = Array.from({ length: 200 }, (_, i) => `msg_${i}`);
    assert.match(String(await refusal(() => owners.checkItems(ids, principal('usr_a')))), /msg_70/);
    assert.deepEqual(
      store.asked.map((a) => a.length),
      [64, 64],
      'the third chunk was never asked',
    );
    // Ids the bridge never saw stored: an admin's pass.
    const adminStore = fakeStore();
    const forAdmin = new ResponseOwners(adminStore);
    assert.equal(
      await refusal(() => forAdmin.checkItems([...ids, 'msg_unknown'], principal('usr_admin', 'admin'))),
      undefined,
    );
    assert.deepEqual(
      adminStore.asked.map((a) => a.length),
      [201],
      "an admin's all at once",
    );
  });

  it("with recheckMs, a member's unknown response or item is looked for once more, so an owner heard meanwhile counts", async () => {
    const store = fakeStore();
    const owners = new ResponseOwners(store, { recheckMs: 50 });
    owners.setPeers(true);
    const pending = Promise.all([
      owners.check('resp_late', principal('usr_a')),
      owners.checkItems(['msg_late'], principal('usr_a')),
    ]);
    // Another replica's notification arrives while the check waits.
    setTimeout(() => owners.heard('resp_late', 'usr_a', ['msg_late']), 10);
    await pending;
    // Still unknown after the second look: refused; another user's, refused too.
    assert.match(
      String(await refusal(() => owners.checkItems(['msg_never'], principal('usr_a')))),
      /item_not_found/,
    );
    assert.deepEqual(store.asked.at(-1), ['msg_never'], 'the store was asked again');
    assert.match(
      String(await refusal(() => owners.check('resp_late', principal('usr_b')))),
      /response_not_found/,
    );
    // An admin passes an unknown id after one lookup; without recheckMs a member gets none either.
    await owners.checkItems(['msg_admin'], principal('usr_admin', 'admin'));
    assert.equal(store.asked.filter((a) => a.includes('msg_admin')).length, 1);
    const plain = fakeStore();
    const once = new ResponseOwners(plain);
    once.setPeers(true);
    assert.match(
      String(await refusal(() => once.checkItems(['msg_x'], principal('usr_a')))),
      /item_not_found/,
    );
    assert.equal(plain.asked.length, 1);
  });

  it("a second look waits only while other replicas are heard from, for at most 4 of a user at once, and never for an id known to be another's", async () => {
    const store = fakeStore({ msg_b: 'usr_b' });
    const owners = new ResponseOwners(store, { recheckMs: 100 });
    /** How often the store was asked for `id`: twice when its check took a second look. */
    const looks = (id: string): number => store.asked.filter((a) => a.includes(id)).length;
    // No peers (one replica): refused after one lookup.
    await refusal(() => owners.checkItems(['msg_x'], principal('usr_a')));
    assert.equal(looks('msg_x'), 1);
    owners.setPeers(true);
    await refusal(() => owners.checkItems(['msg_x2'], principal('usr_a')));
    assert.equal(looks('msg_x2'), 2, 'with peers, a second look');
    // Another's id beside a made-up one: refused before any wait.
    await refusal(() => owners.checkItems(['msg_b', 'msg_y'], principal('usr_a')));
    assert.equal(looks('msg_y'), 1);
    // Five of one user at once: four wait, the fifth is refused at once; another user still gets a look.
    await Promise.all(
      [...Array.from({ length: 5 }, (_, i) => ['usr_a', `msg_a${i}`]), ['usr_c', 'msg_c']].map(([user, id]) =>
        refusal(() => owners.checkItems([id!], principal(user!))),
      ),
    );
    assert.deepEqual(Array.from({ length: 5 }, (_, i) => looks(`msg_a${i}`)).sort(), [1, 2, 2, 2, 2]);
    assert.equal(looks('msg_c'), 2);
  });

  it('tells a new response even when its items are known, and tells contested items as such', () => {
    const told: unknown[][] = [];
    const one = new ResponseOwners(fakeStore());
    one.shareWith((...args) => told.push(args));
    one.note(rec({ responseId: 'resp_1', responseItems: ['msg_1'] }));
    one.note(rec({ responseId: 'resp_2', responseItems: ['msg_1'] }));
    one.note(rec({ userId: 'usr_b', responseId: 'resp_3', responseItems: ['msg_1', 'msg_3'] }));
    assert.deepEqual(told, [
      ['resp_1', 'usr_a', ['msg_1'], undefined],
      ['resp_2', 'usr_a', ['msg_1'], undefined],
      ['resp_3', 'usr_b', ['msg_1', 'msg_3'], ['msg_1']],
    ]);
  });

  it('tells the other replicas of a response with its first 64 items; what they hear is known without the store', async () => {
    const told: unknown[][] = [];
    const one = new ResponseOwners(fakeStore());
    one.shareWith((...args) => told.push(args));
    const items = Array.from({ length: 100 }, (_, i) => `msg_${i}`);
    one.noteNamed('usr_a', 'resp_1');
    one.note(rec({ responseId: 'resp_1', responseItems: items }));
    assert.deepEqual(told, [
      ['resp_1', 'usr_a'],
      ['resp_1', 'usr_a', items.slice(0, 64), undefined],
    ]);
    const store = fakeStore();
    const two = new ResponseOwners(store);
    two.heard('resp_1', 'usr_a', items.slice(0, 64));
    // What cannot be an id is ignored.
    two.heard('resp_2', 'usr_b', [7, null, '', 'z'.repeat(300), 'msg_ok']);
    two.heard('resp_3', 'usr_b', 'msg_not_a_list');
    // Told as contested: nobody's here too, though this replica never heard the first owner.
    two.heard('resp_4', 'usr_b', ['msg_c'], ['msg_c']);
    assert.match(
      String(await refusal(() => two.checkItems(['msg_c'], principal('usr_b')))),
      /item_not_found/,
    );
    assert.equal(await refusal(() => two.checkItems(['msg_0', 'msg_63'], principal('usr_a'))), undefined);
    assert.equal(await refusal(() => two.checkItems(['msg_ok'], principal('usr_b'))), undefined);
    assert.deepEqual(store.asked, []);
    assert.match(
      String(await refusal(() => two.checkItems(['msg_64'], principal('usr_a')))),
      /item_not_found/,
    );
    assert.deepEqual(store.asked, [['msg_64']], 'beyond the first 64, the store is asked');
  });
});
