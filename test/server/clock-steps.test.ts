import assert from 'node:assert/strict';
import { RecentActivity } from '../../server/alerts/anomaly';
import { retentionNow } from '../../server/audit/audit-plugin';
import type { Principal } from '../../server/core/principal';
import { isBridgeError } from '../../server/errors';
import { CircuitBreakers } from '../../server/proxy/circuit-breaker';
import { RateLimiter } from '../../server/spend/rate-limits';
import type { Store } from '../../server/store/types';
import { TestClock } from '../helpers/clock';

/**
 * Durations counted by wall time, across a wall clock that steps back (NTP, a clock an admin set
 * right): a step of a day must not lock a user out, or keep a model's breaker open, for a day.
 */
describe('a wall clock stepped back', () => {
  const member = { user: { id: 'usr_clock', email: 'c@example.com' }, key: { id: 'key_c' } } as Principal;

  it('costs a rate-limited user one window at most, and the limit still holds after it', () => {
    const clock = new TestClock();
    const limiter = new RateLimiter({} as Store, { rpm: 3, tpm: 0 }, () => clock.now());
    const admit = (): string | null => {
      try {
        limiter.admit(`int_${Math.random()}`, member);
        return null;
      } catch (err) {
        assert.ok(isBridgeError(err));
        return `${err.code} ${err.headers['retry-after']}`;
      }
    };
    assert.equal(admit(), null);
    clock.stepBack(3_600_000);
    assert.equal(admit(), null);
    assert.equal(admit(), null);
    assert.equal(admit(), 'rate_limited 60');
    clock.advance(60_000);
    assert.equal(admit(), null, 'a minute after the step, the window has moved on');
    assert.equal(admit(), null);
    assert.equal(admit(), null);
    assert.equal(admit()?.split(' ')[0], 'rate_limited', 'the limit still holds');
  });

  it('keeps a breaker open for its cooldown from now, not until the clock catches up', () => {
    const clock = new TestClock();
    const breakers = new CircuitBreakers({ threshold: 2, cooldownMs: 30_000 }, () => clock.now());
    breakers.record('anthropic', 'claude-x', false, false);
    breakers.record('anthropic', 'claude-x', false, false);
    assert.equal(breakers.admit('anthropic', 'claude-x').admitted, false);
    clock.stepBack(2 * 86_400_000);
    const during = breakers.admit('anthropic', 'claude-x');
    assert.deepEqual(during, { admitted: false, retryAfterMs: 30_000 });
    clock.advance(30_000);
    assert.deepEqual(breakers.admit('anthropic', 'claude-x'), { admitted: true, probe: true });
  });
});

describe('a wall clock that jumps ahead while the bridge runs', () => {
  it('moves the retention cutoff by the time that has passed, not by the jump', () => {
    const start = Date.parse('2026-12-01T00:00:00.000Z');
    const hour = 3_600_000;
    // An hour has passed; the wall clock says forty days.
    assert.equal(retentionNow(start + 40 * 24 * hour, start, hour), start + hour);
    // A clock that stepped back prunes by it: less, never more.
    assert.equal(retentionNow(start - 2 * hour, start, hour), start - 2 * hour);
    assert.equal(retentionNow(start + hour, start, hour), start + hour);
  });
});

describe('anomaly detection across a wall clock stepped back', () => {
  it('lets the last hour’s spend and the last minute’s requests age out an hour after the step, as without it', () => {
    const recent = new RecentActivity();
    const t = Date.parse('2026-12-01T12:00:30.000Z');
    recent.add(t, 1, 1000);
    assert.equal(recent.lastHour(t).costUsd, 1);
    let now = t - 2 * 3_600_000;
    for (let m = 0; m <= 61; m++) {
      recent.add(now, 0, 0);
      now += 60_000;
    }
    assert.equal(recent.lastHour(now).costUsd, 0, 'the spend from before the step has left the hour');
    assert.ok(
      recent.lastMinuteRequests(now) <= 2,
      'the request times from before the step have left the minute',
    );
  });
});
