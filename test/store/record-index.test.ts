import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { idKey, RecordIndex } from '../../server/store/embedded/record-index';
import type { Interception } from '../../shared/interception';
import { newRecord } from './contract';

/** What idKey computed before it was a loop: the regex form it must match exactly. */
function regexIdKey(id: string): number {
  const hex = id.replace(/[^0-9a-f]/gi, '').slice(-13);
  return hex.length === 0 ? -1 : Number.parseInt(hex, 16);
}

describe('the embedded record index', () => {
  it('keys an id by its last 13 hex digits exactly as the regex form did', () => {
    const ids = [
      '',
      'int_',
      'gw_',
      'int_ABC',
      'int_12',
      'zz-ff',
      'no hex here: ghijk',
      ...Array.from({ length: 2000 }, () => `int_${randomUUID()}`),
      ...Array.from({ length: 200 }, () => randomUUID().toUpperCase()),
      ...Array.from({ length: 200 }, () => `x${randomUUID().replace(/-/g, '')}${randomUUID().slice(0, 5)}`),
    ];
    for (const id of ids) assert.equal(idKey(id), regexIdKey(id), id);
    assert.equal(idKey('int_'), -1);
    assert.ok(Number.isSafeInteger(idKey(`int_${randomUUID()}`)));
  });

  it('answers a filter on a value never seen without walking the records', () => {
    const index = new RecordIndex();
    for (let i = 1; i <= 50; i++) {
      const rec = { ...newRecord(i), seq: i } as Interception;
      if (i === 7)
        rec.toolCalls = [
          { id: 't', name: 'Bash', server: null, input: {}, injected: false, at: rec.startedAt },
        ];
      index.add(rec, { segment: 1, offset: i * 100, length: 99 });
    }
    const all = (f: Parameters<RecordIndex['matcher']>[0]): number[] => {
      const m = index.matcher(f);
      if (!m) return [];
      return Array.from({ length: index.size }, (_, i) => i).filter((i) => m(i));
    };
    assert.equal(all({ sessionId: 'ses_1' }).length, 13);
    assert.deepEqual(all({ tool: 'Bash' }), [6]);
    for (const f of [{ userId: 'usr_never' }, { client: 'nobody' }, { tool: 'NeverCalled' }])
      assert.equal(index.matcher(f), null, JSON.stringify(f));
    assert.deepEqual(all({ sessionId: 'a-session-never-seen' }), []);
    assert.deepEqual(all({ userId: 'usr_a', model: 'no-such-model' }), []);
    assert.equal(all({ model: 'gpt-5' }).length, 16);
  });

  it("walks only the named user's records, newest first below a cursor, and follows retention", () => {
    const index = new RecordIndex();
    const users = ['usr_a', 'usr_b', 'usr_c', 'usr_d'];
    // 4,000 records; usr_d has one in a hundred.
    for (let i = 1; i <= 4000; i++) {
      const userId = i % 100 === 0 ? 'usr_d' : users[i % 3]!;
      index.add({ ...newRecord(i), seq: i, userId } as Interception, {
        segment: 1,
        offset: i * 100,
        length: 99,
      });
    }
    const seqsOf = (it: Iterable<number>): number[] => [...it].map((i) => index.seqAt(i));
    const rare = seqsOf(index.positionsBelow({ userId: 'usr_d' }, Number.POSITIVE_INFINITY));
    assert.equal(rare.length, 40, 'one position per record of the user, none of the others');
    assert.deepEqual(rare.slice(0, 3), [4000, 3900, 3800]);
    assert.deepEqual(seqsOf(index.positionsBelow({ userId: 'usr_d' }, 3900)).slice(0, 2), [3800, 3700]);
    assert.deepEqual(seqsOf(index.positions({ userId: 'usr_d' })).slice(0, 2), [100, 200]);
    assert.deepEqual([...index.positionsBelow({ userId: 'usr_never' }, Number.POSITIVE_INFINITY)], []);
    assert.equal([...index.positionsBelow({}, 11)].length, 10, 'no user: every record below the cursor');
    // Retention takes the oldest 1,050: positions shift, the user's list follows.
    index.dropFirst(1050);
    const left = seqsOf(index.positionsBelow({ userId: 'usr_d' }, Number.POSITIVE_INFINITY));
    assert.equal(left.length, 30);
    assert.equal(left.at(-1), 1100);
    assert.deepEqual(seqsOf(index.positions({ userId: 'usr_d' })), left.slice().reverse());
    // A record by id, through the typed array's own search.
    const target = index.seqAt(index.size - 5);
    const rec = { ...newRecord(target), seq: target };
    const found = [...index.candidatesForId(rec.id)].map((i) => index.seqAt(i));
    assert.ok(found.includes(target), `${rec.id} found`);
    assert.deepEqual([...index.candidatesForId('int_')], [], 'an id without hex digits: nothing walked');
  });

  it('keeps no string of the session ids and model names members choose', () => {
    const index = new RecordIndex();
    for (let i = 1; i <= 20_000; i++) {
      const rec = {
        ...newRecord(i),
        seq: i,
        sessionId: `ses-${randomUUID()}`,
        model: `model-${randomUUID()}`,
      } as Interception;
      index.add(rec, { segment: 1, offset: i * 100, length: 99 });
    }
    // Interned strings are the few users, clients, teams, providers, APIs and statuses.
    const interned = (index as unknown as { strings: { values: string[] } }).strings.values.length;
    assert.ok(interned < 20, `${interned} strings kept for 20,000 records`);
  });
});
