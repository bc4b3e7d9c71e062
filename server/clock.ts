/**
 * Time as a dependency (docs/architecture.md): every component that measures periods, windows,
 * expiries or cooldowns takes its time from here, so tests advance a fake clock instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch, as `Date.now()`. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** The clock as a `Date` factory, for components that take one. */
export function datesOf(clock: Clock): () => Date {
  return () => new Date(clock.now());
}
