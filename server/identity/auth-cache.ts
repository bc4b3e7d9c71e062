import type { User } from '../../shared/identity';
import type { KeyRecord } from '../core/principal';
import type { StoreChange } from '../store/types';

/** Entries kept per map at most: a replica serving more distinct keys than this re-reads the coldest. */
export const AUTH_CACHE_ENTRIES = 10_000;
/**
 * How long a cached key or user is trusted without hearing of a change: the bound on staleness when
 * a change notification is lost (the listening connection was reconnecting), not the common case.
 */
export const AUTH_CACHE_TTL_MS = 30_000;

interface Entry<T> {
  value: T;
  at: number;
}

/** One entry of an Lru, linked in recency order. */
interface LruNode<K, V> {
  key: K;
  value: V;
  /** Towards the least recently used. */
  older: LruNode<K, V> | null;
  /** Towards the most recently used. */
  newer: LruNode<K, V> | null;
}

/**
 * A map that forgets its least recently used entry past `max`. Recency is a linked list of its
 * entries, so a hit only moves pointers: moving a hit to the end of the Map itself (delete, then set
 * again) rehashed the Map's table every few hits, and the table of a long-lived Map is allocated in
 * the old generation, so two or three hits a request filled it with garbage for full collections
 * to clear (docs/performance.md, "Tables that churn").
 */
class Lru<K, V> {
  private readonly map = new Map<K, LruNode<K, V>>();
  /** The least recently used entry: the next forgotten. */
  private oldest: LruNode<K, V> | null = null;
  private newest: LruNode<K, V> | null = null;
  constructor(
    private readonly max: number,
    /** Told of each entry forgotten for room. */
    private readonly onEvict?: (v: V) => void,
  ) {}

  get(k: K): V | undefined {
    const n = this.map.get(k);
    if (n === undefined) return undefined;
    this.touch(n);
    return n.value;
  }

  set(k: K, v: V): void {
    const n = this.map.get(k);
    if (n !== undefined) {
      n.value = v;
      this.touch(n);
      return;
    }
    const node: LruNode<K, V> = { key: k, value: v, older: this.newest, newer: null };
    if (this.newest) this.newest.newer = node;
    else this.oldest = node;
    this.newest = node;
    this.map.set(k, node);
    if (this.map.size > this.max) {
      const coldest = this.oldest!;
      this.unlink(coldest);
      this.map.delete(coldest.key);
      this.onEvict?.(coldest.value);
    }
  }

  delete(k: K): void {
    const n = this.map.get(k);
    if (n === undefined) return;
    this.unlink(n);
    this.map.delete(k);
  }

  clear(): void {
    this.map.clear();
    this.oldest = null;
    this.newest = null;
  }

  get size(): number {
    return this.map.size;
  }

  /** Makes `n` the most recently used. */
  private touch(n: LruNode<K, V>): void {
    if (n === this.newest) return;
    this.unlink(n);
    n.older = this.newest;
    this.newest!.newer = n;
    this.newest = n;
  }

  private unlink(n: LruNode<K, V>): void {
    if (n.older) n.older.newer = n.newer;
    else this.oldest = n.newer;
    if (n.newer) n.newer.older = n.older;
    else this.newest = n.older;
    n.older = null;
    n.newer = null;
  }
}

/**
 * Keys (by hash) and users (by id) as the store last gave them, so authenticating a request costs
 * no database round trip. Only what the store found is kept: an unknown key is asked again each
 * time (a brute force of random keys grows nothing here; the auth throttle slows it). Entries go
 * when the store announces a change to that key or user (`watch`: every replica hears it), and
 * after AUTH_CACHE_TTL_MS in any case.
 */
export class AuthCache {
  private readonly keys: Lru<string, Entry<KeyRecord>>;
  /** Key id → hash: changes name keys by id, the cache finds them by hash. */
  private readonly hashOf: Lru<string, string>;
  private readonly users: Lru<string, Entry<User>>;
  /**
   * Bumped by every invalidation. A read that started before one may have seen the old row, so its
   * answer is used but not cached (else a revocation heard mid-read would be undone for a TTL).
   */
  private generation = 0;
  /**
   * The replica's listening connection is down: a key revoked or a user changed on another
   * replica meanwhile would go unheard, so what is read is used and not kept until it listens again.
   */
  private deaf = false;

  constructor(
    private readonly now: () => number,
    max = AUTH_CACHE_ENTRIES,
    private readonly ttlMs = AUTH_CACHE_TTL_MS,
  ) {
    // The id index holds exactly the cached keys: a key forgotten for room or age leaves it too,
    // so it never fills with ids of keys gone from the cache and pushes out a live key's id (which
    // a revocation would then not find).
    this.keys = new Lru(max, (e) => this.hashOf.delete(e.value.id));
    this.hashOf = new Lru(max);
    this.users = new Lru(max);
  }

  /** Where a read begins: pass it to `putKey`/`putUser` with what the read found. */
  mark(): number {
    return this.generation;
  }

  key(hash: string): KeyRecord | undefined {
    const key = this.fresh(this.keys, hash, (expired) => this.hashOf.delete(expired.id));
    // Used with its key, so the id index never forgets a key the cache still holds.
    if (key) this.hashOf.set(key.id, hash);
    return key;
  }

  user(id: string): User | undefined {
    return this.fresh(this.users, id);
  }

  putKey(mark: number, key: KeyRecord): void {
    if (mark !== this.generation || this.deaf) return;
    this.keys.set(key.hash, { value: key, at: this.now() });
    this.hashOf.set(key.id, key.hash);
  }

  putUser(mark: number, user: User): void {
    if (mark !== this.generation || this.deaf) return;
    this.users.set(user.id, { value: user, at: this.now() });
  }

  /** Drops what a store change makes stale; other changes are not about keys or users. */
  apply(change: StoreChange): void {
    switch (change.kind) {
      case 'key': {
        this.generation++;
        const hash = this.hashOf.get(change.id);
        if (hash !== undefined) this.keys.delete(hash);
        this.hashOf.delete(change.id);
        return;
      }
      case 'user':
        this.generation++;
        this.users.delete(change.id);
        return;
      case 'resync':
        this.clear();
        this.deaf = !change.listening;
        return;
      case 'doc':
      case 'event':
      case 'peers':
      case 'rate':
      case 'response':
      case 'gateway':
        return;
      default: {
        // A new kind of change must be decided on here.
        const unknown: never = change;
        throw new Error(`unhandled store change ${JSON.stringify(unknown)}`);
      }
    }
  }

  clear(): void {
    this.generation++;
    this.keys.clear();
    this.hashOf.clear();
    this.users.clear();
  }

  get size(): { keys: number; users: number } {
    return { keys: this.keys.size, users: this.users.size };
  }

  private fresh<T>(lru: Lru<string, Entry<T>>, k: string, onExpired?: (value: T) => void): T | undefined {
    const e = lru.get(k);
    if (!e) return undefined;
    if (this.now() - e.at > this.ttlMs) {
      lru.delete(k);
      onExpired?.(e.value);
      return undefined;
    }
    return e.value;
  }
}
