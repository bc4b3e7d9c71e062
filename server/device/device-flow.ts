import { createHash, randomBytes, randomInt } from 'node:crypto';
import type { CreatedKey, User } from '../../shared/identity';
import type { KeyRecord } from '../core/principal';
import { BridgeError } from '../errors';
import { addressKey, evictionFor } from '../http/address-share';
import { AuthThrottle } from '../identity/auth-throttle';
import { type IdentityService, renewalBound } from '../identity/identity-service';
import type { Store } from '../store/types';

/** How long a user has to approve a device (RFC 8628 `expires_in`). */
export const DEVICE_CODE_TTL_SECONDS = 600;
/** The polling interval a device is told to keep; each `slow_down` adds 5 s (RFC 8628 §3.5). */
export const POLL_INTERVAL_SECONDS = 5;
/**
 * Consonants only, no vowels (no words), no look-alikes: 20^8 ≈ 2.6·10^10 codes, of which at most
 * a few thousand are live, and wrong guesses are throttled (docs/sso.md, threat model).
 */
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';
const USER_CODE_LENGTH = 8;
const DEVICE_CODE_RE = /^aibd_[A-Za-z0-9_-]{43}$/;
/**
 * Sign-ins waiting at once, in all and per address (its /64 for IPv6): the start route is public.
 * When all are taken, the busiest address's oldest waiting sign-in makes room (address-share.ts).
 */
const MAX_PENDING = 1000;
const MAX_PENDING_PER_ADDRESS = 20;
/** Wrong user codes one signed-in user (or one address) may enter per minute before 429. */
const WRONG_CODES_PER_MINUTE = 10;
/** Answered or expired grants are kept this long after expiry, so a late poll hears `expired_token`. */
const KEEP_AFTER_EXPIRY_MS = 10 * 60_000;

/** RFC 8628 §3.5 and RFC 6749 §5.2 error codes, answered in the OAuth error shape. */
export type DeviceTokenErrorCode =
  | 'authorization_pending'
  | 'slow_down'
  | 'access_denied'
  | 'expired_token'
  | 'invalid_grant'
  | 'invalid_request'
  | 'unsupported_grant_type';

export class DeviceTokenError extends Error {
  constructor(
    readonly code: DeviceTokenErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'DeviceTokenError';
  }
}

/** A device sign-in as stored (kind `device_grant`): the device code and user code only as SHA-256. */
interface StoredGrant {
  /** Hex SHA-256 of the device code (also the document id). */
  id: string;
  userCodeHash: string;
  /** What the device called itself; becomes the key's name. */
  deviceName: string;
  clientAddress: string | null;
  /** addressKey of the client address (address-share.ts); absent on grants stored before it was kept. */
  addr?: string;
  createdAt: string;
  expiresAt: string;
  intervalSeconds: number;
  lastPollAt: string | null;
  status: 'pending' | 'approved' | 'denied';
  /** Who approved or denied it. */
  userId: string | null;
  /** Where the verification page sends the browser after an approval (the extension's callback); absent for `aibridge login`. */
  redirectUri?: string;
  /**
   * Approved with a device key (or a session opened with one): that key's renewal bound, which the
   * new key may not outlive (ms since the epoch). Absent: approved with a sign-in through the
   * identity provider or a key an admin issued.
   */
  approverBound?: number;
}

/** What the verification page shows of a waiting device. */
export interface PendingDevice {
  deviceName: string;
  clientAddress: string | null;
  createdAt: string;
  expiresAt: string;
  /** Where the browser goes after an approval, or null: the page shows it before the user approves. */
  redirectUri: string | null;
}

export interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  expiresIn: number;
  interval: number;
}

function shown(g: StoredGrant): PendingDevice {
  return {
    deviceName: g.deviceName,
    clientAddress: g.clientAddress,
    createdAt: g.createdAt,
    expiresAt: g.expiresAt,
    redirectUri: g.redirectUri ?? null,
  };
}

/** The grant's address share; grants stored before `addr` was kept are counted by their address. */
function addrOf(g: StoredGrant): string {
  return g.addr ?? (g.clientAddress === null ? '' : addressKey(g.clientAddress));
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** `abcd efgh`, `ABCD-EFGH`, `abcdefgh` → `ABCDEFGH`: users retype what they see. */
export function normalizeUserCode(input: string): string {
  return input.toUpperCase().replace(/[^A-Z]/g, '');
}

function newUserCode(): string {
  let code = '';
  for (let i = 0; i < USER_CODE_LENGTH; i++) code += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)];
  return code;
}

/** `ABCDEFGH` → `ABCD-EFGH`, as shown and printed. */
export function formatUserCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

/**
 * The bridge as an RFC 8628 device authorization server for its own keys (docs/sso.md): a device
 * asks for a code, a signed-in user approves it on `/device`, the device's next poll receives a
 * fresh bridge key for that user. Grants live in the store so any replica answers any step; the
 * claim of an approved grant is its deletion, so exactly one poll gets the key.
 */
export class DeviceFlow {
  private readonly wrongCodes: AuthThrottle;

  constructor(
    private readonly store: Store,
    private readonly identity: IdentityService,
    private readonly now: () => Date,
    private readonly keyDays: number,
    /** AIBRIDGE_DEVICE_KEY_MAX_DAYS: how long after a sign-in its device keys may be renewed; 0: unbounded. */
    private readonly keyMaxDays = 0,
  ) {
    this.wrongCodes = new AuthThrottle(WRONG_CODES_PER_MINUTE, () => this.now().getTime());
  }

  async start(
    deviceName: string,
    clientAddress: string | undefined,
    redirectUri?: string,
  ): Promise<DeviceAuthorization> {
    const now = this.now();
    const live = await this.prune(now);
    const addr = clientAddress === undefined ? undefined : addressKey(clientAddress);
    // Per address as one party holds them: an IPv6 host has a whole /64 to rotate through.
    if (addr !== undefined && live.filter((g) => addrOf(g) === addr).length >= MAX_PENDING_PER_ADDRESS)
      throw new BridgeError(
        'rate_limited',
        'Too many device sign-ins from this address; retry in a minute.',
        {
          headers: { 'retry-after': '60' },
        },
      );
    if (live.length >= MAX_PENDING) {
      // Full: the oldest unanswered grant of the address holding the most makes room, so a flood
      // from many addresses only ever replaces its own and never locks everyone out. Answered
      // grants (a user approved or denied them) are not given up for an anonymous start.
      const waiting = live.filter((g) => g.status === 'pending').map((g) => ({ ...g, addr: addrOf(g) }));
      const evict = evictionFor(waiting, waiting.length);
      if (!evict)
        throw new BridgeError('rate_limited', 'Too many device sign-ins are waiting; retry in a minute.', {
          headers: { 'retry-after': '60' },
        });
      await this.store.deleteDoc('device_grant', evict.id);
    }
    const deviceCode = `aibd_${randomBytes(32).toString('base64url')}`;
    let userCode = newUserCode();
    // A clash with a live code would let one approval answer the wrong device: draw again.
    const taken = new Set(live.map((g) => g.userCodeHash));
    while (taken.has(sha256(userCode))) userCode = newUserCode();
    const grant: StoredGrant = {
      id: sha256(deviceCode),
      userCodeHash: sha256(userCode),
      deviceName,
      clientAddress: clientAddress ?? null,
      ...(addr === undefined ? {} : { addr }),
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + DEVICE_CODE_TTL_SECONDS * 1000).toISOString(),
      intervalSeconds: POLL_INTERVAL_SECONDS,
      lastPollAt: null,
      status: 'pending',
      userId: null,
      ...(redirectUri === undefined ? {} : { redirectUri }),
    };
    await this.store.putDoc('device_grant', grant.id, grant);
    return { deviceCode, userCode, expiresIn: DEVICE_CODE_TTL_SECONDS, interval: POLL_INTERVAL_SECONDS };
  }

  /** The device's poll: a key once approved (exactly once), else the RFC 8628 error that applies. */
  async poll(deviceCode: string): Promise<CreatedKey> {
    const unknown = new DeviceTokenError(
      'invalid_grant',
      'Unknown device code, or its key was already handed out; run the sign-in again.',
    );
    if (!DEVICE_CODE_RE.test(deviceCode)) throw unknown;
    const id = sha256(deviceCode);
    const grant = await this.store.getDoc<StoredGrant>('device_grant', id);
    if (!grant) throw unknown;
    const now = this.now();
    if (Date.parse(grant.expiresAt) <= now.getTime())
      throw new DeviceTokenError('expired_token', 'The code expired before anyone approved it; start again.');
    if (grant.status === 'denied') {
      await this.store.deleteDoc('device_grant', id);
      throw new DeviceTokenError('access_denied', 'The sign-in was denied.');
    }
    if (grant.status === 'approved') {
      // Deleting is the claim: of two racing polls (or replicas), only one deletes.
      if (!(await this.store.deleteDoc('device_grant', id))) throw unknown;
      const user = grant.userId === null ? undefined : await this.store.getUserById(grant.userId);
      if (!user) throw new DeviceTokenError('access_denied', 'The user who approved no longer exists.');
      // Renewed for at most AIBRIDGE_DEVICE_KEY_MAX_DAYS from this sign-in, and no further than
      // the device key that approved it: a key cannot approve its own successor past its bound.
      const bound = Math.min(
        this.keyMaxDays > 0 ? now.getTime() + this.keyMaxDays * 86_400_000 : Number.POSITIVE_INFINITY,
        grant.approverBound ?? Number.POSITIVE_INFINITY,
      );
      return this.identity.issueKey(user, {
        name: grant.deviceName,
        expiresAt: new Date(Math.min(now.getTime() + this.keyDays * 86_400_000, bound)).toISOString(),
        renewable: true,
        renewableUntil: Number.isFinite(bound) ? new Date(bound).toISOString() : undefined,
      });
    }
    const early =
      grant.lastPollAt !== null &&
      now.getTime() - Date.parse(grant.lastPollAt) < grant.intervalSeconds * 1000;
    // An early poll is told to slow down and changes nothing stored: the poll is public, and a
    // write per poll let anyone holding a device code keep the store rewriting (the embedded
    // store's db.json, whole, fsynced). A poll at the pace is written, once per interval.
    if (early)
      throw new DeviceTokenError(
        'slow_down',
        `Polling faster than every ${grant.intervalSeconds}s; wait ${grant.intervalSeconds + 5}s between polls.`,
      );
    await this.store.putDoc<StoredGrant>('device_grant', id, { ...grant, lastPollAt: now.toISOString() });
    throw new DeviceTokenError('authorization_pending', 'Waiting for the user to approve the code.');
  }

  /** The waiting device a user code names, for the verification page. */
  async lookup(userCode: string, user: User, ip: string | undefined): Promise<PendingDevice> {
    return shown(await this.pending(userCode, user, ip));
  }

  /**
   * Approves (the device's next poll gets a key for `user`) or denies the device a user code names.
   * `approver`: the key the approval was made with (an admin-page session's key, or the bearer
   * key). A device key passes its own renewal bound on to the key it approves.
   */
  async answer(
    userCode: string,
    user: User,
    ip: string | undefined,
    approve: boolean,
    approver?: Pick<KeyRecord, 'renewable' | 'createdAt' | 'renewableUntil' | 'expiresAt'>,
  ): Promise<PendingDevice> {
    const approverBound = approver?.renewable ? renewalBound(approver, this.keyMaxDays) : undefined;
    const g = await this.pending(userCode, user, ip);
    if (approve && approverBound !== undefined && approverBound <= this.now().getTime() + 60_000)
      throw new BridgeError(
        'sign_in_renewal_ended',
        'This device key can approve no more sign-ins: its renewals have ended (AIBRIDGE_DEVICE_KEY_MAX_DAYS). Sign in through the identity provider and approve it there.',
      );
    await this.store.putDoc<StoredGrant>('device_grant', g.id, {
      ...g,
      status: approve ? 'approved' : 'denied',
      userId: user.id,
      ...(approve && approverBound !== undefined && Number.isFinite(approverBound) ? { approverBound } : {}),
    });
    return shown(g);
  }

  /**
   * A live, unanswered grant by user code. Wrong codes count against the signed-in user and their
   * address alike, so guessing is slow from one account and from one machine.
   */
  private async pending(userCode: string, user: User, ip: string | undefined): Promise<StoredGrant> {
    const who = [`user:${user.id}`, ...(ip === undefined ? [] : [`ip:${ip}`])];
    const wait = Math.max(...who.map((w) => this.wrongCodes.retryAfterMs(w)));
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000);
      throw new BridgeError('rate_limited', `Too many wrong codes; retry in ${seconds}s.`, {
        headers: { 'retry-after': String(seconds) },
      });
    }
    const code = normalizeUserCode(userCode);
    const hash = sha256(code);
    const now = this.now().getTime();
    const found =
      code.length === USER_CODE_LENGTH
        ? (await this.store.listDocs<StoredGrant>('device_grant')).find(
            (g) => g.userCodeHash === hash && g.status === 'pending' && Date.parse(g.expiresAt) > now,
          )
        : undefined;
    if (!found) {
      for (const w of who) this.wrongCodes.fail(w);
      throw new BridgeError(
        'user_code_not_found',
        'No device is waiting for that code: check it, or start the sign-in again.',
      );
    }
    return found;
  }

  /** Drops grants long expired; returns the live ones. */
  private async prune(now: Date): Promise<StoredGrant[]> {
    const live: StoredGrant[] = [];
    for (const g of await this.store.listDocs<StoredGrant>('device_grant')) {
      const expires = Date.parse(g.expiresAt);
      if (expires + KEEP_AFTER_EXPIRY_MS <= now.getTime()) await this.store.deleteDoc('device_grant', g.id);
      else if (expires > now.getTime()) live.push(g);
    }
    return live;
  }
}
