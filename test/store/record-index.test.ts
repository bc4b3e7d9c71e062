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
