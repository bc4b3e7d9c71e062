/**
 * Collections for what every request adds and removes again on a long-lived collection. A `Set` or
 * `Map` that lives long has its table in V8's old generation, and adding and deleting rehashes that
 * table every few operations into a new one allocated there too: garbage that only a full (mark-
 * compact) collection frees. One add and one delete a request on a few such sets started a full
 * collection every few thousand requests (docs/performance.md, "Tables that churn"). These keep
 * their members in an array that only grows, and each member's place in a property of its own.
 */

/**
 * A set of objects: add, delete, size and iteration, in no particular order. Each member gets a
 * property keyed by the set's own symbol (its place), so membership costs no hash table.
 */
export class ChurnFreeSet<T extends object> implements Iterable<T> {
  private readonly items: T[] = [];
  private readonly slot = Symbol('place in a ChurnFreeSet');

  add(x: T): this {
    if (this.has(x)) return this;
    (x as Record<symbol, number>)[this.slot] = this.items.length;
    this.items.push(x);
    return this;
  }

  has(x: T): boolean {
    const i = (x as Record<symbol, number | undefined>)[this.slot];
    return i !== undefined && i >= 0 && this.items[i] === x;
  }

  delete(x: T): boolean {
    const place = x as Record<symbol, number | undefined>;
    const i = place[this.slot];
    if (i === undefined || i < 0 || this.items[i] !== x) return false;
    const last = this.items.pop()!;
    if (last !== x) {
      this.items[i] = last;
      (last as Record<symbol, number>)[this.slot] = i;
    }
    // Not deleted: a property deleted would make the object a slow dictionary.
    place[this.slot] = -1;
    return true;
  }

  get size(): number {
    return this.items.length;
  }

  [Symbol.iterator](): Iterator<T> {
    return this.items[Symbol.iterator]();
  }
}

/** One entry of a FifoTimes: when it was handed over, and whether it is done. */
export interface Timed<T> {
  readonly at: number;
  readonly value: T;
  done: boolean;
}

/**
 * Entries in the order they were added, each with a time, until each is marked done (in any
 * order): how many are not done, the oldest not done, and the values of those not done. A ring
 * that grows when full; nothing is allocated per entry but the entry itself.
 */
export class FifoTimes<T> {
  private ring: (Timed<T> | undefined)[] = new Array(64);
  private head = 0;
  /** Entries from head on, done or not. */
  private length = 0;
  private open = 0;

  add(at: number, value: T): Timed<T> {
    if (this.length === this.ring.length) this.grow();
    const e: Timed<T> = { at, value, done: false };
    this.ring[(this.head + this.length) % this.ring.length] = e;
    this.length++;
    this.open++;
    return e;
  }

  done(e: Timed<T>): void {
    if (e.done) return;
    e.done = true;
    this.open--;
    // What is done at the front goes; one done behind one that is not waits for it.
    while (this.length > 0) {
      const first = this.ring[this.head]!;
      if (!first.done) break;
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.ring.length;
      this.length--;
    }
  }

  /** Entries not done. */
  get size(): number {
    return this.open;
  }

  /** The oldest entry not done: the first, since `done` drops every done entry at the front. */
  oldest(): Timed<T> | undefined {
    return this.length > 0 ? this.ring[this.head] : undefined;
  }

  /** The values of the entries not done, oldest first. */
  values(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.length; i++) {
      const e = this.ring[(this.head + i) % this.ring.length]!;
      if (!e.done) out.push(e.value);
    }
    return out;
  }

  private grow(): void {
    const next: (Timed<T> | undefined)[] = new Array(this.ring.length * 2);
    for (let i = 0; i < this.length; i++) next[i] = this.ring[(this.head + i) % this.ring.length];
    this.ring = next;
    this.head = 0;
  }
}
