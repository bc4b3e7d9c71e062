import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { verifyStoredChain } from '../../server/audit/chain-anchor';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import type { NewInterception } from '../../server/store/types';
import type { Interception } from '../../shared/interception';
import { tempDir } from '../helpers/temp-dirs';
import { newRecord } from './contract';

const T0 = Date.parse('2026-03-02T10:00:00.000Z');

/** A record a minute after the last, with a prompt of about 1 KB: 1,300 of them are several read batches. */
function record(i: number): NewInterception {
  const at = T0 + i * 60_000;
  return newRecord(i, {
    startedAt: new Date(at).toISOString(),
    endedAt: new Date(at + 500).toISOString(),
    prompt: `record ${i} ${'lorem ipsum '.repeat(80 + (i % 13))}`,
  });
}

async function storeWith(count: number, segmentBytes = 256 * 1024): Promise<EmbeddedStore> {
  const store = new EmbeddedStore({ dataDir: await tempDir(), segmentBytes });
  await store.open();
  for (let i = 0; i < count; i += 100)
    await Promise.all(
      Array.from({ length: Math.min(100, count - i) }, (_, k) => store.appendInterception(record(i + k))),
    );
  return store;
}

describe('embedded store: reading records back in runs', () => {
  it('a scan gives every record once, oldest first, across read batches and segments', async () => {
    const store = await storeWith(1300);
    const seqs: number[] = [];
    for await (const r of store.scanInterceptions({})) seqs.push(r.seq);
    assert.deepEqual(
      seqs,
      Array.from({ length: 1300 }, (_, i) => i + 1),
    );
    // Filtered: one user's, and a text search, newest first through pages.
    const mine: number[] = [];
    for await (const r of store.scanInterceptions({ userId: 'usr_b' })) mine.push(r.seq);
    assert.equal(mine.length, 650);
    const found: Interception[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.listInterceptions({ q: 'record 1' }, 40, cursor);
      found.push(...page.items);
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    const expected = Array.from({ length: 1300 }, (_, i) => i)
      .filter((i) => `record ${i} `.startsWith('record 1'))
      .reverse();
    assert.deepEqual(
      found.map((r) => Number(/^record (\d+)/.exec(r.prompt ?? '')![1])),
      expected,
    );
    await store.close();
  });

  it('a scan paused while retention deletes records goes on with those that stay: none skipped, none twice', async () => {
    const store = await storeWith(1300, 64 * 1024);
    const seen: number[] = [];
    const scan = store.scanInterceptions({})[Symbol.asyncIterator]();
    for (let n = 0; n < 100; n++) seen.push((await scan.next()).value!.seq);
    // Retention takes the records before the 900th's start: whole segments, past what was read.
    const cutoff = (await store.getInterception('int_000900'))!.startedAt;
    const pruned = await store.pruneInterceptions(cutoff);
    assert.ok(pruned > 600, `${pruned} pruned`);
    for (let r = await scan.next(); !r.done; r = await scan.next()) seen.push(r.value.seq);
    // In order, once each; every record that stays is there.
    for (let k = 1; k < seen.length; k++)
      assert.ok(seen[k]! > seen[k - 1]!, `${seen[k]} after ${seen[k - 1]}`);
    const kept: number[] = [];
    for await (const r of store.scanInterceptions({})) kept.push(r.seq);
    assert.equal(kept[0], pruned + 1);
    const after = new Set(seen);
    assert.deepEqual(
      kept.filter((s) => !after.has(s)),
      [],
    );
    await store.close();
  });

  it('a verify reads the disk, not the copy in memory of the newest records', async () => {
    const dir = await tempDir();
    const store = new EmbeddedStore({ dataDir: dir });
    await store.open();
    for (let i = 0; i < 5; i++) await store.appendInterception(record(i));
    assert.equal((await verifyStoredChain(store)).ok, true);
    // Edited on disk under the running store (the same length): its page still comes from memory.
    const segDir = path.join(dir, 'interceptions');
    const file = path.join(segDir, (await fs.readdir(segDir)).find((f) => f.endsWith('.jsonl'))!);
    const text = await fs.readFile(file, 'utf8');
    await fs.writeFile(file, text.replace('record 2 ', 'record 7 '));
    const report = await verifyStoredChain(store);
    assert.equal(report.ok, false);
    assert.equal(report.firstBreak?.seq, 3);
    await store.close();
  });
});
