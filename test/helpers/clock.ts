import type { Clock } from '../../server/clock';

/**
 * A clock the test moves by hand. The app reads time for its windows, expiries and cooldowns only
 * through `Clock.now()`, so advancing this replaces a real sleep; timers (setTimeout) stay real.
 */
export class TestClock implements Clock {
  private ms: number;

  constructor(startMs: number = Date.now()) {
    this.ms = startMs;
  }

  now(): number {
    return this.ms;
  }

  /**
   * The wall clock stepped back by `ms`, as NTP or an admin setting it right does: what counts
   * durations by wall time must not lock anyone out for the length of the step.
   */
  stepBack(ms: number): void {
    if (!(ms >= 0)) throw new Error(`TestClock.stepBack: ${ms} is not a non-negative number of milliseconds`);
    this.ms -= ms;
  }

  /** Moves time forward by `ms` (never back but with stepBack: time does not otherwise run backwards). */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new Error(`TestClock.advance: ${ms} is not a non-negative number of milliseconds`);
    this.ms += ms;
  }
}
