import assert from 'node:assert/strict';
import { ItemIndex } from '../../server/store/embedded/item-index';
import { RecordIndex } from '../../server/store/embedded/record-index';
import { newRecord } from './contract';

describe('the embedded store’s index of stored output items', () => {
  it('finds every record holding an id, newest first, through many merges of its tail', () => {
    const index = new ItemIndex();
    // 10,000 records of three items each (a merge every 4,096 items); every 100th repeats `dup`.
    for (let seq = 1; seq <= 10_000; seq++) {
      index.add(`msg_${seq}`, seq);
      index.add(`rs_${seq}`, seq);
      index.add(seq % 100 === 0 ? 'dup' : `fc_${seq}`, seq);
    }
    assert.equal(index.size, 30_000);
    for (const seq of [1, 2, 4095, 4096, 4097, 9_999, 10_000]) {
      assert.deepEqual(index.seqsFor(`msg_${seq}`), [seq]);
      assert.deepEqual(index.seqsFor(`rs_${seq}`), [seq]);
    }
    const dups = index.seqsFor('dup');
    assert.equal(dups.length, 100);
    assert.deepEqual(
      dups,
      Array.from({ length: 100 }, (_, i) => 10_000 - i * 100),
      'newest first, from the sorted part and the tail alike',
    );
    assert.deepEqual(index.seqsFor('msg_10001'), []);
    assert.deepEqual(index.seqsFor(''), []);
  });

  it('forgets the items of records retention drops, in the sorted part and the tail', () => {
    const index = new ItemIndex();
    for (let seq = 1; seq <= 5_000; seq++) index.add(seq % 10 === 0 ? 'dup' : `msg_${seq}`, seq);
    index.dropBelow(4_500);
    assert.deepEqual(index.seqsFor('msg_4499'), []);
    assert.deepEqual(index.seqsFor('msg_4501'), [4501]);
    assert.deepEqual(index.seqsFor('msg_1'), []);
    assert.deepEqual(
      index.seqsFor('dup'),
      Array.from({ length: 51 }, (_, i) => 5_000 - i * 10),
    );
    assert.equal(index.size, 501);
    // Later items still sort in.
    for (let seq = 5_001; seq <= 9_200; seq++) index.add(`msg_${seq}`, seq);
    assert.deepEqual(index.seqsFor('msg_9200'), [9200]);
    assert.deepEqual(index.seqsFor('msg_4600'), []);
    assert.deepEqual(index.seqsFor('msg_4601'), [4601]);
  });

  it('RecordIndex yields the positions of the records holding an item, and drops them with the records', () => {
    const index = new RecordIndex();
    const loc = { segment: 0, offset: 0, length: 1 };
    for (let i = 0; i < 6; i++) {
      const rec = {
        ...newRecord(i, i % 2 === 0 ? { responseItems: [`msg_${i}`, 'shared'] } : {}),
        seq: i + 1,
        prevHash: '',
        hash: '',
      };
      index.add(rec, loc);
    }
    assert.deepEqual([...index.candidatesForItem('msg_2')], [2]);
    assert.deepEqual([...index.candidatesForItem('shared')], [4, 2, 0]);
    assert.deepEqual([...index.candidatesForItem('msg_1')], []);
    index.dropFirst(3);
    assert.deepEqual([...index.candidatesForItem('msg_2')], []);
    assert.deepEqual([...index.candidatesForItem('shared')], [1], 'positions shift with the records');
  });
});
