import { RecentMap } from '../core/recent-map';
import { addressKey } from '../http/address-share';

const WINDOW_MS = 60_000;
/** Addresses tracked at most; the oldest are forgotten first, so a flood of addresses cannot grow memory. */
const MAX_ADDRESSES = 10_000;

/** Makes a caller's own error for a refusal, from the wait in whole seconds (a `retry-after` value). */
export type Refuse = (retryAfterSeconds: number) => Error;

/**
 * Slows key guessing: an address that presented `limit` bad keys within a minute gets 429 instead
 * of 401 for every further bad key until the `limit`-th latest failure is a minute old. Only
 * failures are throttled: a valid key is served from a throttled address too (the Authenticator
 * asks only after a key failed), so a colleague behind the same NAT or proxy is never locked out.
 * An IPv6 client counts by its /64 (addressKey): one host has a whole /64 to rotate through.
 */
export class AuthThrottle {
  /**
   * Set again on each failure, so an address that keeps failing stays among the newest: a flood of
   * other addresses pushes out only those that stopped (RecentMap: a Map dropping its oldest one
   * at a time cost ~10 µs a new address once full).
   */
  private readonly failures = new RecentMap<string, number[]>(MAX_ADDRESSES);

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

  /**
   * Counts one attempt by `caller`, or, when it has made `limit` within the minute, throws what
   * `refuse` makes of the wait in whole seconds (what a `retry-after` header says) and counts
   * nothing: a pace of attempts asked for, so a refused one uses none of it. Each caller shapes
   * its own refusal (the bridge's `rate_limited`, OAuth's `temporarily_unavailable`).
   */
  take(caller: string | undefined, refuse: Refuse): void {
    const refusal = this.refusal(caller, refuse);
    if (refusal) throw refusal;
    this.count(caller);
  }

  /**
   * Counts a failure by `address`. With `refuse`, throws what it makes of the wait in whole seconds
   * when `address` was already past its pace before this failure; the failure counts all the same,
   * so a caller that keeps failing stays refused until it stops for a minute.
   */
  fail(address: string | undefined, refuse?: Refuse): void {
    const refusal = refuse && this.refusal(address, refuse);
    this.count(address);
    if (refusal) throw refusal;
  }

  private refusal(caller: string | undefined, refuse: Refuse): Error | undefined {
    const wait = this.retryAfterMs(caller);
    return wait > 0 ? refuse(Math.ceil(wait / 1000)) : undefined;
  }

  private count(address: string | undefined): void {
    if (this.limit === 0 || address === undefined) return;
    const ip = this.keyOf(address);
    const list = this.recent(ip);
    this.failures.set(ip, list);
    // Only the latest `limit` failures decide the wait: a client hammering on keeps memory flat.
    if (list.length >= this.limit) list.shift();
    list.push(this.now());
  }
}
