import assert from 'node:assert/strict';
import { Authenticator } from '../../server/identity/auth';
import { AuthCache } from '../../server/identity/auth-cache';
import { IdentityService } from '../../server/identity/identity-service';
import { generateKey, KeyHasher } from '../../server/identity/keys';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { tempDir } from '../helpers/bridge';

/** A hasher that counts what it hashes, to see which requests paid for an HMAC. */
async function countingHasher(dir: string): Promise<{ hasher: KeyHasher; hashed: Map<string, number> }> {
  const hasher = await KeyHasher.load(dir, 'test-secret');
  const hashed = new Map<string, number>();
  const hash = hasher.hash.bind(hasher);
  hasher.hash = (key: string): string => {
    hashed.set(key, (hashed.get(key) ?? 0) + 1);
    return hash(key);
  };
  return { hasher, hashed };
}

describe('the key hash of a key in use', () => {
  let store: EmbeddedStore;
  beforeEach(async () => {
    store = new EmbeddedStore({ dataDir: await tempDir() });
    await store.open();
  });
  afterEach(() => store.close());

  const headers = (key: string) => ({ 'x-api-key': key });

  it('is computed once, not per request, and unknown keys cannot push it out', async () => {
    const { hasher, hashed } = await countingHasher(await tempDir());
    const identity = new IdentityService(store, hasher);
    const user = await identity.createUser({ email: 'a@example.com' });
    const { key } = await identity.issueKey(user);
    hashed.clear();
    const cache = new AuthCache(() => Date.now());
    store.watch((c) => cache.apply(c));
    const auth = new Authenticator(store, hasher, undefined, undefined, undefined, undefined, cache);

    for (let i = 0; i < 50; i++) assert.equal((await auth.authenticate(headers(key))).user.id, user.id);
    assert.equal(hashed.get(key), 1);

    // A flood of well-formed unknown keys: each is hashed (it must be looked up), none is kept.
    const unknown = Array.from({ length: 12_000 }, () => generateKey());
    for (const k of unknown)
      await assert.rejects(
        auth.authenticate(headers(k)),
        (err: { code: string }) => err.code === 'unauthorized',
      );
    await assert.rejects(auth.authenticate(headers(unknown[0]!)));
    assert.equal(hashed.get(unknown[0]!), 2, 'an unknown key is hashed every time, never remembered');
    await auth.authenticate(headers(key));
    assert.equal(hashed.get(key), 1, 'the key in use is still not hashed again');
  });

  it('still refuses a revoked key on the very next request', async () => {
    const { hasher } = await countingHasher(await tempDir());
    const identity = new IdentityService(store, hasher);
    const user = await identity.createUser({ email: 'b@example.com' });
    const issued = await identity.issueKey(user);
    const cache = new AuthCache(() => Date.now());
    store.watch((c) => cache.apply(c));
    const auth = new Authenticator(store, hasher, undefined, undefined, undefined, undefined, cache);
    await auth.authenticate(headers(issued.key));
    await identity.revokeKey(issued.id);
    await assert.rejects(auth.authenticate(headers(issued.key)), /has been revoked/);
    // Without a cache of keys, every request asks the store.
    const bare = new Authenticator(store, hasher);
    const other = await identity.issueKey(user);
    await bare.authenticate(headers(other.key));
    await identity.revokeKey(other.id);
    await assert.rejects(bare.authenticate(headers(other.key)), /has been revoked/);
  });
});
