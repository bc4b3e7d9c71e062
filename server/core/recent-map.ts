/**
 * A map of the most recent entries, at most `limit` of them (between half and all of it), in two
 * generations: new entries go to the young one, and when it holds half the limit, the old one is
 * dropped whole and the young one takes its place. A Map that drops its oldest entry one at a time
 * (`delete(keys().next().value)`) leaves deleted slots at its front that every later look for the
 * oldest walks again until the table is rebuilt: opening a store of a million records that way
 * took minutes.
 */
export class RecentMap<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();
  private readonly half: number;

  constructor(limit: number) {
    this.half = Math.max(1, Math.floor(limit / 2));
  }

  get(key: K): V | undefined {
    return this.young.get(key) ?? this.old.get(key);
  }

  has(key: K): boolean {
    return this.young.has(key) || this.old.has(key);
  }

  /** Sets `key`, as the newest entry. */
  set(key: K, value: V): void {
    this.old.delete(key);
    this.young.set(key, value);
    if (this.young.size >= this.half) {
      this.old = this.young;
      this.young = new Map();
    }
  }

  delete(key: K): boolean {
    const young = this.young.delete(key);
    return this.old.delete(key) || young;
  }

  /** Both generations' entries, for a checkpoint (`restore` puts them back as they were). */
  generations(): { old: [K, V][]; young: [K, V][] } {
    return { old: [...this.old], young: [...this.young] };
  }

  /** This map's entries as `generations` gave them (replacing any it has). */
  restore(g: { old: [K, V][]; young: [K, V][] }): void {
    this.old = new Map(g.old);
    this.young = new Map(g.young);
  }

  /** Every entry, the older generation first. */
  *entries(): IterableIterator<[K, V]> {
    yield* this.old;
    yield* this.young;
  }

  get size(): number {
    return this.young.size + this.old.size;
  }
}
