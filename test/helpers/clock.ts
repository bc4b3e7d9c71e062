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

  /** Moves time forward by `ms` (never back: the app assumes time does not run backwards). */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new Error(`TestClock.advance: ${ms} is not a non-negative number of milliseconds`);
    this.ms += ms;
  }
}
