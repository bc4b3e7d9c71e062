/**
 * How many of the first `end` values of ascending `a` are below `v` (the index of the first one
 * ≥ `v`, or `end`): the binary search of the embedded store's in-memory indexes.
 */
export function countBelow(a: ArrayLike<number>, v: number, end = a.length): number {
  let lo = 0;
  let hi = end;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
