import assert from 'node:assert/strict';
import { ChurnFreeSet, FifoTimes } from '../../server/core/churn-free';

describe('churn-free collections (open exchanges, the recorder’s writes)', () => {
  it('ChurnFreeSet: add, delete, has, size and iteration agree with a Set over random operations', () => {
    const s = new ChurnFreeSet<{ n: number }>();
    const ref = new Set<{ n: number }>();
    const pool = Array.from({ length: 40 }, (_, n) => ({ n }));
    let seed = 7;
    const rnd = (k: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % k;
    };
    for (let i = 0; i < 5000; i++) {
      const x = pool[rnd(pool.length)]!;
      if (rnd(2) === 0) {
        s.add(x);
        ref.add(x);
      } else assert.equal(s.delete(x), ref.delete(x));
      assert.equal(s.size, ref.size);
      assert.equal(s.has(x), ref.has(x));
    }
    assert.deepEqual(
      [...s].map((x) => x.n).sort((a, b) => a - b),
      [...ref].map((x) => x.n).sort((a, b) => a - b),
    );
  });

  it('ChurnFreeSet: an object may be in two sets at once, and deleting from one leaves the other', () => {
    const a = new ChurnFreeSet<object>();
    const b = new ChurnFreeSet<object>();
    const x = {};
    const y = {};
    a.add(x).add(y);
    b.add(y).add(x);
    assert.equal(a.delete(x), true);
    assert.equal(a.has(x), false);
    assert.equal(b.has(x), true);
    assert.equal(a.delete(x), false);
    assert.deepEqual([...a], [y]);
    assert.equal(b.size, 2);
  });

  it('FifoTimes: the oldest entry not done, the count and the values, whatever order entries are done in', () => {
    const q = new FifoTimes<string>();
    const entries = Array.from({ length: 200 }, (_, i) => q.add(i, `v${i}`));
    assert.equal(q.size, 200);
    assert.equal(q.oldest()?.at, 0);
    // Done out of order: the oldest is the first not done.
    q.done(entries[1]!);
    q.done(entries[1]!);
    assert.equal(q.size, 199);
    assert.equal(q.oldest()?.at, 0);
    q.done(entries[0]!);
    assert.equal(q.oldest()?.at, 2);
    for (let i = 199; i >= 100; i--) q.done(entries[i]!);
    assert.equal(q.size, 98);
    assert.deepEqual(
      q.values(),
      Array.from({ length: 98 }, (_, i) => `v${i + 2}`),
    );
    // Grows past its first ring while entries wait at the front.
    for (let i = 200; i < 400; i++) entries.push(q.add(i, `v${i}`));
    for (let i = 2; i < 100; i++) q.done(entries[i]!);
    assert.equal(q.oldest()?.at, 200);
    for (let i = 200; i < 400; i++) q.done(entries[i]!);
    assert.equal(q.size, 0);
    assert.equal(q.oldest(), undefined);
    assert.deepEqual(q.values(), []);
  });
});
