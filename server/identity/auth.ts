import type { IncomingHttpHeaders } from 'node:http';
import type { User } from '../../shared/identity';
import { BridgeError } from '../errors';
import type { KeyRecord, Store } from '../store/types';
import type { AuthThrottle } from './auth-throttle';
import { type KeyHasher, looksLikeKey } from './keys';

/** Who is calling: the user and the key they used. */
export interface Principal {
  user: User;
  key: KeyRecord;
}

/** The bridge key, from `x-api-key` (Anthropic style) or `Authorization: Bearer` (OpenAI style). */
export function credentialFrom(headers: IncomingHttpHeaders): string | undefined {
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey.trim() !== '') return apiKey.trim();
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  return undefined;
}

export class Authenticator {
  constructor(
    private readonly store: Store,
    private readonly hasher: KeyHasher,
    private readonly throttle?: AuthThrottle,
    private readonly now: () => Date = () => new Date(),
    private readonly onFailure: () => void = () => undefined,
  ) {}

  /** Resolves the caller or throws `unauthorized`. The store is asked every time, so revocation and expiry take effect on the next request. */
  async authenticate(headers: IncomingHttpHeaders, ip?: string): Promise<Principal> {
    const token = credentialFrom(headers);
    if (!token)
      throw new BridgeError('unauthorized', 'A bridge key is required (x-api-key or Authorization: Bearer).');
    const wait = this.throttle?.retryAfterMs(ip) ?? 0;
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000);
      throw new BridgeError(
        'rate_limited',
        `Too many invalid keys from this address; retry in ${seconds}s.`,
        {
          headers: { 'retry-after': String(seconds) },
        },
      );
    }
    try {
      return await this.check(token);
    } catch (err) {
      this.throttle?.fail(ip);
      this.onFailure();
      throw err;
    }
  }

  private async check(token: string): Promise<Principal> {
    if (!looksLikeKey(token)) throw new BridgeError('unauthorized', 'That is not a valid bridge key.');
    const key = await this.store.findKeyByHash(this.hasher.hash(token));
    if (!key) throw new BridgeError('unauthorized', 'That is not a valid bridge key.');
    const now = this.now();
    if (key.revokedAt) throw new BridgeError('unauthorized', `Bridge key ${key.prefix}… has been revoked.`);
    if (key.expiresAt && Date.parse(key.expiresAt) <= now.getTime()) {
      throw new BridgeError('unauthorized', `Bridge key ${key.prefix}… has expired.`);
    }
    const user = await this.store.getUserById(key.userId);
    if (!user) throw new BridgeError('unauthorized', 'That is not a valid bridge key.');
    this.store.touchKey(key.id, now.toISOString());
    return { user, key };
  }
}
