import type { SeriesBy, SeriesStep, UsageSeries } from '../../shared/admin';
import { roundUsd, type UsageBucket } from '../core/rollup';
import { eachInTurns } from '../core/turns';

const STEP_MS: Record<SeriesStep, number> = { hour: 3_600_000, day: 86_400_000 };
/** Lines drawn at most; a chart with more is unreadable, so the rest become `(other)`. */
const MAX_SERIES = 8;
export const OTHER = '(other)';

function groupOf(b: UsageBucket, by: SeriesBy): string {
  switch (by) {
    case 'team':
      return b.team ?? '(none)';
    case 'model':
      return b.model ?? '(none)';
    case 'user':
      return b.userEmail;
  }
}

/**
 * Hourly rollups regrouped into a time series: one point per step from `since` to `until`, one line
 * per group (the MAX_SERIES costliest, the rest summed). Steps without requests are 0, so lines
 * stay aligned with `times`.
 */
export async function usageSeries(
  buckets: UsageBucket[],
  by: SeriesBy,
  step: SeriesStep,
  since: Date,
  until: Date,
): Promise<UsageSeries> {
  const ms = STEP_MS[step];
  const start = Math.floor(since.getTime() / ms) * ms;
  const n = Math.max(1, Math.ceil((until.getTime() - start) / ms));
  const times = Array.from({ length: n }, (_, i) => new Date(start + i * ms).toISOString());
  const groups = new Map<string, { costUsd: number[]; requests: number[]; total: number }>();
  await eachInTurns(buckets, (b) => {
    const i = Math.floor((Date.parse(b.hour) - start) / ms);
    if (i < 0 || i >= n) return;
    const key = groupOf(b, by);
    let g = groups.get(key);
    if (!g) {
      g = { costUsd: new Array(n).fill(0), requests: new Array(n).fill(0), total: 0 };
      groups.set(key, g);
    }
    g.costUsd[i]! += b.costUsd;
    g.requests[i]! += b.requests;
    g.total += b.costUsd;
  });
  const ranked = [...groups.entries()].sort((a, b) => b[1].total - a[1].total || a[0].localeCompare(b[0]));
  const kept = ranked.slice(0, MAX_SERIES - (ranked.length > MAX_SERIES ? 1 : 0));
  const rest = ranked.slice(kept.length);
  const series = kept.map(([key, g]) => ({ key, costUsd: g.costUsd, requests: g.requests }));
  if (rest.length > 0) {
    const other = { key: OTHER, costUsd: new Array(n).fill(0), requests: new Array(n).fill(0) };
    for (const [, g] of rest)
      for (let i = 0; i < n; i++) {
        other.costUsd[i] += g.costUsd[i]!;
        other.requests[i] += g.requests[i]!;
      }
    series.push(other);
  }
  for (const s of series) s.costUsd = s.costUsd.map(roundUsd);
  return { by, step, since: times[0]!, until: new Date(start + n * ms).toISOString(), times, series };
}
