import assert from 'node:assert/strict';
import type { KeyRecord } from '../../server/core/principal';
import { BridgeError } from '../../server/errors';
import { Authenticator } from '../../server/identity/auth';
import { AuthCache } from '../../server/identity/auth-cache';
import { generateKey, type KeyHasher } from '../../server/identity/keys';
import type { Store } from '../../server/store/types';
import type { User } from '../../shared/identity';

/**
 * AIBRIDGE_AUDIT_FAILURE=open: what the authenticator remembers to serve through a database
 * outage must never outlive a revocation it heard (the PostgreSQL outage test covers the plain
 * case end to end; here the read that races the revocation).
 */
describe('outage memory of keys (AUDIT_FAILURE=open)', () => {
  it('a read under way when a revocation is heard is not remembered: the revoked key is refused during the outage', async () => {
    const token = generateKey();
    const hasher = { hash: (s: string) => `h:${s}` } as unknown as KeyHasher;
    const key: KeyRecord = {
      id: 'key_1',
      userId: 'usr_1',
      hash: hasher.hash(token),
      name: null,
      prefix: 'aib_x',
      createdAt: new Date().toISOString(),
      expiresAt: null,
      revokedAt: null,
      lastUsedAt: null,
    } as KeyRecord;
    const user = {
      id: 'usr_1',
      email: 'a@example.com',
      name: null,
      team: null,
      role: 'member',
      createdAt: new Date().toISOString(),
    } as User;
    let down = false;
    let answer: (() => void) | undefined;
    const store = {
      async findKeyByHash(): Promise<KeyRecord> {
        if (down) throw new BridgeError('store_unavailable', 'the database is down');
        // The row as read before the revocation committed; the round trip ends after it.
        const row = { ...key };
        await new Promise<void>((r) => {
          answer = r;
        });
        return row;
      },
      async getUserById(): Promise<User> {
        if (down) throw new BridgeError('store_unavailable', 'the database is down');
        return user;
      },
      touchKey(): void {},
    } as unknown as Store;
    const cache = new AuthCache(() => Date.now());
    const auth = new Authenticator(
      store,
      hasher,
      undefined,
      () => new Date(),
      () => undefined,
      15 * 60_000,
      cache,
    );

    const racing = auth.authenticate({ 'x-api-key': token });
    await new Promise((r) => setTimeout(r, 5));
    // The admin revokes the key; the store's feed tells the cache and the authenticator.
    key.revokedAt = new Date().toISOString();
    cache.apply({ kind: 'key', id: key.id });
    auth.apply({ kind: 'key', id: key.id });
    answer!();
    assert.equal((await racing).key.id, key.id, 'the request already under way is served');

    down = true;
    await assert.rejects(auth.authenticate({ 'x-api-key': token }), { code: 'store_unavailable' });
  });
});
