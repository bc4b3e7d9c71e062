import { timingSafeEqual } from 'node:crypto';
import type { Store } from '../store/types';
import type { KeyHasher } from './keys';

/** Why a bridge refuses to start on a store whose keys were hashed under another secret. */
export class KeyHashSecretMismatch extends Error {
  constructor(storeKind: string) {
    super(
      `this bridge's key-hash secret is not the one the ${storeKind} store's keys were hashed with: ` +
        'every bridge key would be refused. Give every replica the same AIBRIDGE_KEY_HASH_SECRET ' +
        '(or the same <data-dir>/key-hash.secret file) as the replica that first started on this store.',
    );
    this.name = 'KeyHashSecretMismatch';
  }
}

/**
 * Compares this bridge's key-hash secret with the one the store was first used with, through a
 * verifier (an HMAC of a fixed text, never the secret): the first bridge on a store records its
 * verifier, every later one must match it. A replica with another secret would answer 401 to every
 * valid key; it stops at start instead.
 */
export async function checkKeyHashSecret(store: Store, hasher: KeyHasher): Promise<void> {
  const mine = hasher.verifier();
  const stored = await store.claimSetting('key_hash_verifier', mine);
  const a = Buffer.from(mine, 'utf8');
  const b = Buffer.from(stored, 'utf8');
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw new KeyHashSecretMismatch(store.kind);
}
