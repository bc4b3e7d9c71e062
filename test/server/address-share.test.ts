import assert from 'node:assert/strict';
import { addressKey, evictionFor, type SharedEntry } from '../../server/http/address-share';

describe('address shares of public, capped stores', () => {
  it('counts an IPv6 client by its /64, however the address is written; IPv4 by its address', () => {
    const k = addressKey('2001:db8:1:2:aaaa::1');
    assert.equal(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'), k, 'same /64');
    assert.equal(addressKey('2001:DB8:1:2::7%eth0'), k, 'case and zone');
    assert.notEqual(addressKey('2001:db8:1:3::1'), k, 'another /64');
    assert.equal(addressKey('::ffff:192.0.2.7'), addressKey('192.0.2.7'), 'IPv4-mapped is the IPv4 address');
    assert.notEqual(addressKey('192.0.2.7'), addressKey('192.0.2.8'));
    assert.ok(!addressKey('192.0.2.7').includes('192'), 'stored hashed, not as the address');
  });

  it('when full, makes room with the oldest entry of the address holding the most; never while not full', () => {
    const e = (id: string, addr: string, at: number): SharedEntry => ({
      id,
      addr,
      createdAt: new Date(at * 1000).toISOString(),
    });
    const live = [e('a1', 'A', 5), e('b1', 'B', 1), e('a2', 'A', 3), e('c1', 'C', 2), e('a3', 'A', 4)];
    assert.equal(evictionFor(live, 6), undefined);
    assert.equal(evictionFor(live, 5)?.id, 'a2', "A holds the most; its oldest goes, not B's older one");
  });
});
