import assert from 'node:assert/strict';
import type { KeyRecord } from '../../server/core/principal';
import { AuthCache } from '../../server/identity/auth-cache';
import type { User } from '../../shared/identity';

const key = (n: number): KeyRecord => ({
  id: `key_${n}`,
  userId: 'usr_1',
  name: null,
  prefix: 'aib_xxxxxx',
  hash: `hash_${n}`,
  createdAt: '2026-01-01T00:00:00.000Z',
  expiresAt: null,
  revokedAt: null,
  lastUsedAt: null,
});
const user: User = {
  id: 'usr_1',
  email: 'a@example.com',
  name: null,
  team: 'red',
  role: 'member',
  createdAt: '2026-01-01T00:00:00.000Z',
};

describe('the authentication cache', () => {
  let now = 0;
  const cache = (max = 100, ttl = 30_000): AuthCache => new AuthCache(() => now, max, ttl);

  it('stays within its bound, forgetting the least recently used', () => {
    const c = cache(3);
    for (let i = 1; i <= 3; i++) c.putKey(c.mark(), key(i));
    assert.ok(c.key('hash_1'), 'a hit makes key 1 the most recent');
    for (let i = 4; i <= 1000; i++) c.putKey(c.mark(), key(i));
    assert.equal(c.size.keys, 3);
    assert.equal(c.key('hash_2'), undefined);
    assert.ok(c.key('hash_1000'));
  });

  it('drops a cached key by id even after other keys expired: their ids do not push its id out', () => {
    now = 0;
    const c = cache(2, 30);
    c.putKey(c.mark(), key(1));
    now = 10;
    c.putKey(c.mark(), key(2));
    now = 20;
    assert.ok(c.key('hash_1'), 'key 1 used last');
    now = 35;
    // Key 1 is past its lifetime (key 2 is not): the cache forgets it when asked.
    assert.equal(c.key('hash_1'), undefined);
    c.putKey(c.mark(), key(3));
    // Key 2 is revoked before it is used again.
    c.apply({ kind: 'key', id: 'key_2' });
    assert.equal(c.key('hash_2'), undefined, 'a revoked key is not served from the cache');
    now = 0;
  });

  it('finds a hot key by id to drop it, however many other keys came and went', () => {
    const c = cache(3);
    c.putKey(c.mark(), key(1));
    for (let i = 2; i <= 50; i++) {
      c.putKey(c.mark(), key(i));
      assert.ok(c.key('hash_1'), 'key 1 is in use');
    }
    c.apply({ kind: 'key', id: 'key_1' });
    assert.equal(c.key('hash_1'), undefined);
  });

  it('forgets an entry after its lifetime even if no change is heard', () => {
    const c = cache(10, 30_000);
    now = 1000;
    c.putKey(c.mark(), key(1));
    c.putUser(c.mark(), user);
    now += 30_000;
    assert.ok(c.key('hash_1'));
    now += 1;
    assert.equal(c.key('hash_1'), undefined);
    assert.equal(c.user('usr_1'), undefined);
  });

  it('drops a key by id and a user by id as changes announce them; other changes keep them', () => {
    const c = cache();
    c.putKey(c.mark(), key(1));
    c.putKey(c.mark(), key(2));
    c.putUser(c.mark(), user);
    c.apply({ kind: 'doc', docKind: 'budget' });
    assert.ok(c.key('hash_1') && c.user('usr_1'));
    c.apply({ kind: 'key', id: 'key_1' });
    assert.equal(c.key('hash_1'), undefined);
    assert.ok(c.key('hash_2'));
    c.apply({ kind: 'user', id: 'usr_1' });
    assert.equal(c.user('usr_1'), undefined);
    c.putUser(c.mark(), user);
    c.apply({ kind: 'resync', listening: true });
    assert.deepEqual(c.size, { keys: 0, users: 0 });
  });

  it('keeps nothing new while the replica is not listening for changes, and caches again once it is', () => {
    const c = cache();
    c.putKey(c.mark(), key(1));
    c.apply({ kind: 'resync', listening: false });
    assert.equal(c.key('hash_1'), undefined, 'emptied');
    c.putKey(c.mark(), key(1));
    c.putUser(c.mark(), user);
    assert.equal(c.key('hash_1'), undefined, 'a revocation now would go unheard: not kept');
    assert.equal(c.user('usr_1'), undefined);
    c.apply({ kind: 'resync', listening: true });
    c.putKey(c.mark(), key(1));
    assert.ok(c.key('hash_1'));
  });

  it('does not keep what a read found if a change was heard while it was reading', () => {
    const c = cache();
    const mark = c.mark();
    c.apply({ kind: 'key', id: 'key_1' }); // the revocation lands while the read is under way
    c.putKey(mark, key(1));
    assert.equal(c.key('hash_1'), undefined);
    c.putKey(c.mark(), key(1));
    assert.ok(c.key('hash_1'));
  });
});
