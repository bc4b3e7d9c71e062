import assert from 'node:assert/strict';
import { isoTime } from '../../server/core/iso-time';

describe('isoTime', () => {
  it('writes what toISOString writes, across seconds, days, years and back again', () => {
    const base = Date.UTC(2026, 11, 31, 23, 59, 58, 990);
    const times: number[] = [];
    for (let i = 0; i < 3_000; i += 7) times.push(base + i);
    // Interleaved starts and ends a second apart, a step back, and far from now.
    times.push(
      base + 5,
      base + 1_005,
      base + 6,
      base + 2_100,
      base - 86_400_000,
      0,
      -1,
      -999,
      -1_000,
      -1_001,
    );
    times.push(Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(10000, 0, 1), Date.UTC(-1, 0, 1), 1.5, -1.5);
    for (const t of times) assert.equal(isoTime(t), new Date(t).toISOString(), String(t));
  });

  it('throws for a time that is none, as toISOString does', () => {
    assert.throws(() => isoTime(Number.NaN), RangeError);
    assert.throws(() => isoTime(8.64e15 + 1), RangeError);
  });
});
