import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';

/**
 * What one party controls of a client address: an IPv4 address, or the /64 of an IPv6 one (a
 * single host is routinely given a whole /64, so its full addresses are as many as it likes).
 * Hashed: stored beside public, unauthenticated entries, it need not be the address itself.
 */
export function addressKey(ip: string): string {
  let key = ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
  const zone = key.indexOf('%');
  if (zone !== -1) key = key.slice(0, zone);
  if (isIPv6(key)) key = `${ipv6Prefix64(key)}::/64`;
  return createHash('sha256').update(key).digest('base64url').slice(0, 22);
}

function ipv6Prefix64(ip: string): string {
  const gap = ip.indexOf('::');
  const head = (gap === -1 ? ip : ip.slice(0, gap)).split(':').filter((g) => g !== '');
  const tail =
    gap === -1
      ? []
      : ip
          .slice(gap + 2)
          .split(':')
          .filter((g) => g !== '');
  const groups =
    gap === -1 ? head : [...head, ...new Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  return groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':');
}

/** An entry of a capped store that unauthenticated callers fill. */
export interface SharedEntry {
  id: string;
  createdAt: string;
  /** addressKey of whoever made it; absent on entries stored before it was kept. */
  addr?: string;
}

/**
 * When a store that anyone may add to is full, which entry makes room: the oldest of the address
 * holding the most. One address looping on a public route then only ever replaces its own
 * entries, and cannot lock everyone else out by filling the cap. Undefined while not full.
 */
export function evictionFor<T extends SharedEntry>(live: readonly T[], cap: number): T | undefined {
  if (live.length < cap) return undefined;
  const byAddr = new Map<string, T[]>();
  for (const e of live) {
    const k = e.addr ?? '';
    const list = byAddr.get(k);
    if (list) list.push(e);
    else byAddr.set(k, [e]);
  }
  let busiest: T[] = [];
  for (const list of byAddr.values()) if (list.length > busiest.length) busiest = list;
  let oldest = busiest[0];
  for (const e of busiest) if (oldest === undefined || e.createdAt < oldest.createdAt) oldest = e;
  return oldest;
}

/**
 * Waiting entries one address may hold in a store that anyone may add to (SSO sign-ins, MCP
 * authorizations under way): past it, a new one replaces the address's own oldest, so a loop
 * from one address never holds more of the store, and never refuses anyone.
 */
export const WAITING_PER_ADDRESS = 100;

/**
 * What one address may start a minute on such a route. Each start stored costs the embedded
 * store a rewrite of db.json (tens of milliseconds on the event loop with thousands of users), so
 * a loop on a public route would keep every request of the bridge waiting; past the pace a start
 * is refused without a write, for at most a minute (a cap on what is waiting, as this was before,
 * locked an address out for the ten minutes its entries live: an office behind one NAT, or a
 * whole organisation behind a proxy the bridge is not told of).
 */
export const STARTS_PER_ADDRESS_PER_MINUTE = 60;

/** The oldest of `addr`'s entries when it already holds `WAITING_PER_ADDRESS` of `live`: to replace. */
export function ownOldestWhenFull<T extends SharedEntry>(live: readonly T[], addr: string): T | undefined {
  const own = live.filter((e) => e.addr === addr);
  if (own.length < WAITING_PER_ADDRESS) return undefined;
  let oldest = own[0];
  for (const e of own) if (oldest === undefined || e.createdAt < oldest.createdAt) oldest = e;
  return oldest;
}
