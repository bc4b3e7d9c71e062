import assert from 'node:assert/strict';
import { Batcher, QueueFullError } from '../../server/store/postgres/batcher';

describe('the PostgreSQL store batcher (audit write queue)', () => {
  it('writes hand-overs in order, in batches, one batch at a time', async () => {
    const batches: number[][] = [];
    let writing = 0;
    const b = new Batcher<number, string>(
      async (items) => {
        writing++;
        assert.equal(writing, 1, 'one batch at a time');
        batches.push(items);
        // Kept in real time: a write that takes a while, so later hand-overs queue behind it (no window involved).
        await new Promise((r) => setTimeout(r, 5));
        writing--;
        return items.map((i) => `r${i}`);
      },
      { maxBatch: 4, limit: 100 },
    );
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => b.push(i)));
    assert.deepEqual(
      results,
      Array.from({ length: 10 }, (_, i) => `r${i}`),
    );
    assert.deepEqual(batches.flat(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.ok(batches.every((x) => x.length <= 4));
    assert.equal(batches[0]!.length, 4, 'hand-overs of one tick share a batch');
  });

  it('intervalMs (AIBRIDGE_AUDIT_SYNC_MS with sent acks): items within the interval share a batch; one after a quiet spell is not held', async () => {
    const batches: { items: number[]; at: number }[] = [];
    const b = new Batcher<number, number>(
      async (items) => {
        batches.push({ items, at: performance.now() });
        return items;
      },
      { maxBatch: 500, limit: 100, intervalMs: 200 },
    );
    const t0 = performance.now();
    await b.push(0);
    assert.ok(performance.now() - t0 < 150, 'the first item after a quiet spell is written at once');
    // Eight items 5 ms apart, well inside the interval however slow the timers run.
    const written: Promise<number>[] = [];
    for (let i = 1; i <= 8; i++) {
      written.push(b.push(i));
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(await Promise.all(written), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(
      batches.map((x) => x.items),
      [[0], [1, 2, 3, 4, 5, 6, 7, 8]],
    );
    assert.ok(
      batches[1]!.at - batches[0]!.at >= 200 - 5,
      'not before the interval since the last batch began',
    );
  });

  it('intervalMs never holds a full batch: a backlog drains as fast as it is written', async () => {
    const starts: number[] = [];
    const b = new Batcher<number, number>(
      async (items) => {
        starts.push(performance.now());
        return items;
      },
      { maxBatch: 10, limit: 100, intervalMs: 300 },
    );
    const t0 = performance.now();
    const all = await Promise.all(Array.from({ length: 35 }, (_, i) => b.push(i)));
    assert.equal(all.length, 35);
    assert.equal(starts.length, 4, 'three full batches and the rest');
    assert.ok(
      starts[2]! - t0 < 150,
      `the three full batches went at once (${(starts[2]! - t0).toFixed(0)} ms)`,
    );
    assert.ok(starts[3]! - starts[2]! >= 300 - 5, 'the partial one waited for the interval');
  });

  it('intervalMs: a batch that is due is started by the next hand-over, which it carries; a lone item waits at most twice the interval', async () => {
    const interval = 500;
    const batches: { items: number[]; at: number }[] = [];
    const b = new Batcher<number, number>(
      async (items) => {
        batches.push({ items, at: performance.now() });
        return items;
      },
      { maxBatch: 500, limit: 100, intervalMs: interval },
    );
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
    const t0 = performance.now();
    await b.push(0);
    await sleep(20);
    // Item 1 waits; its timer would start it a further interval on. Item 2 comes once the
    // interval has passed, and starts the batch at once.
    const one = b.push(1);
    await sleep(interval + 100 - (performance.now() - t0));
    const twoAt = performance.now();
    await Promise.all([one, b.push(2)]);
    const threeAt = performance.now();
    await b.push(3);
    assert.deepEqual(
      batches.map((x) => x.items),
      [[0], [1, 2], [3]],
    );
    assert.ok(batches[1]!.at >= twoAt, 'the second batch began when item 2 came');
    assert.ok(
      batches[1]!.at - twoAt < interval / 2,
      `the second batch began ${(batches[1]!.at - twoAt).toFixed(0)} ms after item 2 came, not on the timer`,
    );
    assert.ok(batches[2]!.at - batches[1]!.at >= interval - 5, 'not before the interval');
    assert.ok(
      batches[2]!.at - threeAt < 2 * interval + 1000,
      `a lone item went ${(batches[2]!.at - threeAt).toFixed(0)} ms after it came`,
    );
  });

  it('intervalMs: a batch that fills while it waits goes at once, as does a queue full at its limit, and a flush', async () => {
    const batches: number[][] = [];
    const b = new Batcher<number, number>(
      async (items) => {
        batches.push(items);
        return items;
      },
      { maxBatch: 3, limit: 100, intervalMs: 60_000 },
    );
    const tick = () => new Promise((r) => setTimeout(r, 20));
    await b.push(0);
    const t0 = performance.now();
    // Item 1 waits for the interval; 2 and 3 come while it does and fill the batch.
    const one = b.push(1);
    await tick();
    await Promise.all([one, b.push(2), b.push(3)]);
    // A queue whose limit is below a batch's size: full at 2, the two go (and a hand-over in the
    // same turn is refused).
    const small = new Batcher<number, number>(
      async (items) => {
        batches.push(items);
        return items;
      },
      { maxBatch: 500, limit: 2, intervalMs: 60_000 },
    );
    await small.push(10);
    const waiting = [small.push(11)];
    await tick();
    waiting.push(small.push(12));
    await assert.rejects(small.push(13), QueueFullError);
    assert.deepEqual(await Promise.all(waiting), [11, 12]);
    // A flush does not wait for the interval either.
    const last = b.push(4);
    await tick();
    await b.flush();
    assert.equal(await last, 4);
    assert.ok(performance.now() - t0 < 5_000, 'nothing waited for the interval');
    assert.deepEqual(batches, [[0], [1, 2, 3], [10], [11, 12], [4]]);
  });

  it('refuses at once past its limit (backpressure), and a failed batch fails each of its items', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let calls = 0;
    const b = new Batcher<number, number>(
      async (items) => {
        calls++;
        await gate;
        if (calls === 1) throw new Error('database down');
        return items;
      },
      { maxBatch: 2, limit: 3 },
    );
    const first = [b.push(1), b.push(2)];
    await new Promise((r) => setImmediate(r));
    // The first batch is being written; three more may wait, the fourth is refused.
    const waiting = [b.push(3), b.push(4), b.push(5)];
    await assert.rejects(b.push(6), QueueFullError);
    release();
    for (const p of first) await assert.rejects(p, /database down/);
    assert.deepEqual(await Promise.all(waiting), [3, 4, 5], 'later batches are written');
    await b.flush();
    assert.equal(b.waiting, 0);
  });
});
