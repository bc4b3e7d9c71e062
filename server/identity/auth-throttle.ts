import { addressKey } from '../http/address-share';

const WINDOW_MS = 60_000;
/** Addresses tracked at most; the oldest are forgotten first, so a flood of addresses cannot grow memory. */
const MAX_ADDRESSES = 10_000;

/**
 * Slows key guessing: an address that presented `limit` bad keys within a minute gets 429 instead
 * of 401 for every further bad key until the `limit`-th latest failure is a minute old. Only
 * failures are throttled: a valid key is served from a throttled address too (the Authenticator
 * asks only after a key failed), so a colleague behind the same NAT or proxy is never locked out.
 * An IPv6 client counts by its /64 (addressKey): one host has a whole /64 to rotate through.
 */
export class AuthThrottle {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limit: number,
    private readonly now: () => number = Date.now,
    /** What is counted for a caller: by default its address (an IPv6 one by /64); a user id counts as itself. */
    private readonly keyOf: (caller: string) => string = addressKey,
  ) {}

  private recent(ip: string): number[] {
    const t = this.now();
    const list = this.failures.get(ip);
    if (!list) return [];
    while (list.length > 0 && list[0]! <= t - WINDOW_MS) list.shift();
    if (list.length === 0) this.failures.delete(ip);
    return list;
  }

  /** Milliseconds until `ip` may try again, or 0 when it may now. */
  retryAfterMs(ip: string | undefined): number {
    if (this.limit === 0 || ip === undefined) return 0;
    const list = this.recent(this.keyOf(ip));
    if (list.length < this.limit) return 0;
    return Math.max(1, list[list.length - this.limit]! + WINDOW_MS - this.now());
  }

  fail(address: string | undefined): void {
    if (this.limit === 0 || address === undefined) return;
    const ip = this.keyOf(address);
    const list = this.recent(ip);
    if (list.length === 0) {
      if (this.failures.size >= MAX_ADDRESSES) {
        const oldest = this.failures.keys().next().value;
        if (oldest !== undefined) this.failures.delete(oldest);
      }
      this.failures.set(ip, list);
    }
    // Only the latest `limit` failures decide the wait: a client hammering on keeps memory flat.
    if (list.length >= this.limit) list.shift();
    list.push(this.now());
  }
}
