import assert from 'node:assert/strict';
import { RecentMap } from '../../server/core/recent-map';

describe('RecentMap (the embedded store’s recent tool results)', () => {
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
});
