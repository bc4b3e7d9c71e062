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

/**
 * A list of times kept oldest first whose newest were stamped after `now`: the wall clock stepped
 * back (NTP, a clock an admin set right) since. Those are taken as made now, so a window or a
 * cooldown they count in ends one window from now, not once the clock has caught up with the step.
 * Only the entries after `now` are visited (the list's tail).
 */
export function clampToNow(times: number[], now: number): void {
  for (let i = times.length - 1; i >= 0 && times[i]! > now; i--) times[i] = now;
}
