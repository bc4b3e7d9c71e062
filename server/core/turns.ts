/** Resolves on a later turn of the event loop, after the I/O waiting now. */
export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Calls `fn` on each item, letting the event loop turn every `perTurn` items: a report over an
 * organisation's millions of hourly buckets took seconds, and held every member's requests as long.
 */
export async function eachInTurns<T>(
  items: Iterable<T>,
  fn: (item: T) => void,
  perTurn = 20_000,
): Promise<void> {
  let n = 0;
  for (const item of items) {
    fn(item);
    if (++n % perTurn === 0) await nextTurn();
  }
}
