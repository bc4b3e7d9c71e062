import type { KeyInfo } from '../../shared/identity';
import { BridgeApiError } from '../api/bridge-client';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/**
 * When a device key is renewed: once at most three days are left, or half its current life for
 * short-lived keys (a 1-day key renews with 12 hours left), never later than an hour before it ends.
 * The extension checks hourly, so an editor left open renews long before the key runs out.
 */
export function renewalDue(
  key: Pick<KeyInfo, 'createdAt' | 'expiresAt' | 'renewable'>,
  now: number,
): boolean {
  if (!key.renewable || key.expiresAt === null) return false;
  const ends = Date.parse(key.expiresAt);
  const life = ends - Date.parse(key.createdAt);
  const margin = Math.max(HOUR, Math.min(3 * DAY, life / 2));
  return ends - now <= margin;
}

export type RenewOutcome =
  | { type: 'renewed'; key: KeyInfo }
  /** The bridge refused the key (revoked, expired, user deactivated): sign in again. */
  | { type: 'refused'; message: string }
  /** Not reachable now; tried again at the next check unless the key runs out first. */
  | { type: 'later'; message: string };

/** Turns the renewal call's result into what the extension does next. */
export async function renew(call: () => Promise<{ key: KeyInfo }>): Promise<RenewOutcome> {
  try {
    return { type: 'renewed', key: (await call()).key };
  } catch (err) {
    if (err instanceof BridgeApiError && (err.status === 401 || err.status === 403))
      return { type: 'refused', message: err.message };
    return { type: 'later', message: (err as Error).message };
  }
}

/**
 * The key has reached the longest the bridge renews it (`renewableUntil`, AIBRIDGE_DEVICE_KEY_MAX_DAYS
 * after the sign-in): it runs out at its expiry, and only a new sign-in, through the identity
 * provider, gives a key past it. False for a key the bridge sets no such bound on.
 */
export function renewalsEnded(key: Pick<KeyInfo, 'expiresAt' | 'renewableUntil' | 'renewable'>): boolean {
  if (!key.renewable || key.expiresAt === null || key.renewableUntil === undefined) return false;
  return Date.parse(key.expiresAt) >= Date.parse(key.renewableUntil);
}
