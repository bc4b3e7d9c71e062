/** What the mock and the load generator agree on. */

/** The model name that makes the mock hold a stream open until the bench releases it. */
export const HOLD_MODEL = 'bench-hold';

/** Each text delta the mock writes carries this, then the time it was written. */
export const STAMP = '~t';

/** Microseconds of the system's monotonic clock (process.hrtime), zero-padded. */
export const STAMP_DIGITS = 16;

/** Now, as the mock stamps it and the load generator reads it: µs of CLOCK_MONOTONIC. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}
