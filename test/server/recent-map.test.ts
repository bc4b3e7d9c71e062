import assert from 'node:assert/strict';
import { RecentMap } from '../../server/core/recent-map';
import { AuthThrottle } from '../../server/identity/auth-throttle';

describe('RecentMap (recent tool results, sessions, key hashes, throttled addresses)', () => {
  it('keeps the newest entries, between half the limit and all of it, and drops the oldest generation whole', () => {
    const m = new RecentMap<string, number>(10);
    for (let i = 0; i < 4; i++) m.set(`k${i}`, i);
    assert.equal(m.size, 4);
    assert.equal(m.get('k0'), 0);
    // The fifth fills the young generation (half the limit): it becomes the old one.
    m.set('k4', 4);
    for (let i = 5; i < 10; i++) m.set(`k${i}`, i);
    // k0…k4 were the old generation when k5…k9 filled the young one: dropped now.
    assert.equal(m.get('k0'), undefined);
    assert.equal(m.get('k4'), undefined);
    assert.equal(m.get('k5'), 5);
    assert.equal(m.get('k9'), 9);
    assert.ok(m.size >= 5 && m.size <= 10, String(m.size));
  });

  it('a key set again is the newest, with its new value, however old it was', () => {
    const m = new RecentMap<string, string>(4);
    m.set('a', 'first');
    m.set('b', 'x');
    m.set('a', 'second');
    assert.equal(m.get('a'), 'second');
    m.set('c', 'x');
    m.set('d', 'x');
    assert.equal(m.get('a'), 'second', 'moved to the young generation when set again');
    assert.ok(m.size <= 4);
  });

  it('deletes from either generation, and lists every entry', () => {
    const m = new RecentMap<string, number>(4);
    m.set('a', 1);
    m.set('b', 2);
    m.set('c', 3);
    assert.equal(m.delete('a'), true, 'from the old generation');
    assert.equal(m.delete('c'), true, 'from the young one');
    assert.equal(m.delete('c'), false);
    assert.deepEqual([...m.entries()], [['b', 2]]);
  });

  it('the key-guessing throttle: an address that keeps failing stays throttled through a flood of 20,000 other addresses', () => {
    let now = 1_000_000;
    const t = new AuthThrottle(5, () => now);
    for (let i = 0; i < 5; i++) t.fail('10.0.0.1');
    assert.ok(t.retryAfterMs('10.0.0.1') > 0, 'throttled after 5 bad keys');
    for (let i = 0; i < 20_000; i++) {
      t.fail(`10.1.${i >> 8}.${i & 255}`);
      // It keeps guessing while the flood goes on.
      if (i % 1000 === 0) t.fail('10.0.0.1');
      now += 1;
    }
    assert.ok(
      t.retryAfterMs('10.0.0.1') > 0,
      'still throttled: a flood of other addresses did not wipe its failures',
    );
  });
});
