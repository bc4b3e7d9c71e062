import { randomUUID } from 'node:crypto';
import type { CreatedKey, KeyInfo, Role, User } from '../../shared/identity';
import { emailKey } from '../core/email';
import type { KeyRecord } from '../core/principal';
import { trimmedName } from '../core/team-name';
import { BridgeError, isBridgeError } from '../errors';
import type { Store, UserPatch } from '../store/types';
import { displayPrefix, generateKey, type KeyHasher, newKeyId } from './keys';

export interface NewUserInput {
  email: string;
  name?: string | undefined;
  team?: string | undefined;
  role?: Role | undefined;
}

export function keyInfo(k: KeyRecord): KeyInfo {
  const { hash: _hash, ...info } = k;
  return info;
}

/**
 * How far a device key may be renewed (ms since the epoch): its `renewableUntil` (set when it was
 * minted), and AIBRIDGE_DEVICE_KEY_MAX_DAYS after its creation as the setting stands now (a key
 * minted before keys carried a bound, or a setting lowered since); Infinity when neither bounds it.
 * A key whose dates cannot be read renews no further than it stands.
 */
export function renewalBound(
  key: Pick<KeyInfo, 'createdAt' | 'renewableUntil' | 'expiresAt'>,
  maxDays: number,
): number {
  const stands = Date.parse(key.expiresAt ?? '') || 0;
  let bound = Number.POSITIVE_INFINITY;
  if (key.renewableUntil !== undefined) {
    const until = Date.parse(key.renewableUntil);
    bound = Number.isFinite(until) ? until : stands;
  }
  if (maxDays > 0) {
    const created = Date.parse(key.createdAt);
    bound = Math.min(bound, Number.isFinite(created) ? created + maxDays * 86_400_000 : stands);
  }
  return bound;
}

/** Users and keys: the rules (unique emails, keys shown once, stored hashed) in one place. */
export class IdentityService {
  constructor(
    private readonly store: Store,
    private readonly hasher: KeyHasher,
    readonly now: () => Date = () => new Date(),
    /** AIBRIDGE_KEYS_PER_USER: a loop of sign-ins (device flow, provisioners) cannot mint without end. */
    private readonly keysPerUser = Number.POSITIVE_INFINITY,
  ) {}

  async createUser(input: NewUserInput): Promise<User> {
    const email = emailKey(input.email);
    if (email === undefined)
      throw new BridgeError(
        'invalid_request',
        'email has a character that reads as another in lower case (such as the Kelvin sign); write it in plain letters.',
      );
    if (await this.store.getUserByEmail(email))
      throw new BridgeError('user_exists', `A user with email ${email} already exists.`);
    const user: User = {
      id: `usr_${randomUUID().replaceAll('-', '').slice(0, 20)}`,
      email,
      name: input.name ?? null,
      team: teamName(input.team ?? null),
      role: input.role ?? 'member',
      createdAt: this.now().toISOString(),
    };
    await this.store.createUser(user);
    return user;
  }

  /**
   * Changes a user's name, team or role; never leaves the bridge without an admin who can sign in
   * (a deactivated admin counts for nothing, and demoting one takes nothing away).
   */
  async updateUser(emailOrId: string, patch: UserPatch): Promise<User> {
    const user = await this.findUser(emailOrId);
    if (user.role === 'admin' && patch.role === 'member' && !user.deactivatedAt) {
      const others = (await this.store.listUsers()).filter(
        (u) => u.role === 'admin' && !u.deactivatedAt && u.id !== user.id,
      );
      if (others.length === 0) throw new BridgeError('last_admin', 'Make another user an admin first.');
    }
    const updated = await this.store.updateUser(
      user.id,
      patch.team === undefined ? patch : { ...patch, team: teamName(patch.team) },
    );
    if (!updated) throw new BridgeError('user_not_found', `No user ${emailOrId}.`);
    return updated;
  }

  async findUser(emailOrId: string): Promise<User> {
    const user = (await this.store.getUserByEmail(emailOrId)) ?? (await this.store.getUserById(emailOrId));
    if (!user) throw new BridgeError('user_not_found', `No user ${emailOrId}.`);
    return user;
  }

  async issueKey(
    user: User,
    opts: {
      name?: string | undefined;
      expiresAt?: string | undefined;
      renewable?: boolean;
      /** A renewable key's bound (KeyInfo.renewableUntil). */
      renewableUntil?: string | undefined;
    } = {},
  ): Promise<CreatedKey> {
    // As the store has the user now: a sign-in approved before a deactivation, or a provisioner,
    // would otherwise mint a key that comes alive again on reactivation, after its peers were revoked.
    const current = await this.store.getUserById(user.id);
    if (current?.deactivatedAt)
      throw new BridgeError(
        'user_inactive',
        `User ${current.email} is deactivated by the identity provider.`,
      );
    if (Number.isFinite(this.keysPerUser)) {
      const at = this.now().getTime();
      const live = (await this.store.listKeys(user.id)).filter(
        (k) => k.revokedAt === null && (k.expiresAt === null || Date.parse(k.expiresAt) > at),
      ).length;
      if (live >= this.keysPerUser)
        throw new BridgeError(
          'too_many_keys',
          `${user.email} holds ${live} live keys, the most allowed (AIBRIDGE_KEYS_PER_USER); revoke one first.`,
        );
    }
    const key = generateKey();
    const record: KeyRecord = {
      id: newKeyId(),
      userId: user.id,
      name: opts.name ?? null,
      prefix: displayPrefix(key),
      hash: this.hasher.hash(key),
      createdAt: this.now().toISOString(),
      expiresAt: opts.expiresAt ? new Date(opts.expiresAt).toISOString() : null,
      revokedAt: null,
      lastUsedAt: null,
      ...(opts.renewable && opts.expiresAt ? { renewable: true as const } : {}),
      ...(opts.renewable && opts.expiresAt && opts.renewableUntil
        ? { renewableUntil: new Date(opts.renewableUntil).toISOString() }
        : {}),
    };
    await this.store.createKey(record);
    return { id: record.id, key, prefix: record.prefix, expiresAt: record.expiresAt };
  }

  /**
   * Pushes a device key's expiry to `days` from now, so a device in use does not meet it, but never
   * past its renewal bound (renewalBound): renewing asks the bridge, not the identity provider, so
   * without the bound a user the provider no longer knows kept their device keys for as long as
   * they used them (docs/sso.md). Only keys a device sign-in minted are renewable.
   */
  async renewKey(key: KeyRecord, days: number, maxDays = 0): Promise<KeyInfo> {
    if (!key.renewable || key.expiresAt === null)
      throw new BridgeError(
        'key_not_renewable',
        'Only keys from a device sign-in can be renewed; sign in again for a new one.',
      );
    const span = days * 86_400_000;
    const bound = renewalBound(key, maxDays);
    const target = Math.min(this.now().getTime() + span, bound);
    const moved = target - Date.parse(key.expiresAt);
    // A renewal that would move the expiry by less than a step (a day, a tenth of a short span) is
    // not written: in a loop, each one rewrote the embedded store's whole file on the event loop.
    // The last one, up to the bound, is written however short: the key then ends on its bound.
    if (!(moved > 0) || (moved < Math.min(86_400_000, span / 10) && target < bound)) return keyInfo(key);
    const renewed = await this.store.renewKey(key.id, new Date(target).toISOString());
    if (!renewed) throw new BridgeError('key_not_found', `No key ${key.id}.`);
    return keyInfo(renewed);
  }

  async revokeKey(id: string): Promise<KeyInfo> {
    const key = await this.store.revokeKey(id, this.now().toISOString());
    if (!key) throw new BridgeError('key_not_found', `No key ${id}.`);
    return keyInfo(key);
  }

  /** On an empty store, creates the first admin and a key for them; returns the key, else undefined. */
  async bootstrapAdmin(email: string): Promise<CreatedKey | undefined> {
    if ((await this.store.countUsers()) > 0) return undefined;
    try {
      const admin = await this.createUser({ email, name: 'Administrator', role: 'admin' });
      return await this.issueKey(admin, { name: 'bootstrap admin key' });
    } catch (err) {
      // Replicas starting together on one database: another one bootstrapped the admin first.
      if (isBridgeError(err) && err.code === 'user_exists') return undefined;
      throw err;
    }
  }
}

/** Blank is no team: an identity provider's empty group name must not make sign-in fail. */
function teamName(team: string | null): string | null {
  return team === null ? null : trimmedName(team);
}
