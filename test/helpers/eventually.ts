export interface EventuallyOptions {
  /** How long to keep trying before failing (real time: this waits for an asynchronous effect). */
  timeoutMs?: number;
  /** Pause between tries. */
  intervalMs?: number;
  /** What is awaited, for the timeout message. */
  what?: string;
}

/**
 * Polls `fn` until it returns a truthy value, and resolves with it, for effects that land
 * asynchronously (records flushed, a socket closed). A throw counts as "not yet" (so `fn` may assert
 * and then return true); on timeout the last error is rethrown, or the message says what was awaited.
 */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  { timeoutMs = 5000, intervalMs = 20, what = 'a condition' }: EventuallyOptions = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let last: unknown;
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      if (last !== undefined) throw last;
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
