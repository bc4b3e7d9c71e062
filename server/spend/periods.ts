import type { Period } from '../../shared/spend';

const DAY = 86_400_000;

/** Budget and usage periods are UTC calendar periods; weeks start on Monday (ISO 8601). */
export function periodStart(period: Period, now: Date): Date {
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
  if (period === 'day') return d;
  if (period === 'week') return new Date(d.getTime() - ((d.getUTCDay() + 6) % 7) * DAY);
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
}

export function periodEnd(period: Period, now: Date): Date {
  const start = periodStart(period, now);
  if (period === 'day') return new Date(start.getTime() + DAY);
  if (period === 'week') return new Date(start.getTime() + 7 * DAY);
  return new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1));
}
