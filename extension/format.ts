/** How numbers, money and times read in the status bar, tree and detail view. */

/** 950 → "950", 12_345 → "12.3k", 4_560_000 → "4.56M". */
export function formatTokens(n: number): string {
  if (!Number.isFinite(n)) return '?';
  const abs = Math.abs(n);
  if (abs < 1000) return String(Math.round(n));
  // Bounds sit where rounding would otherwise print "1000k".
  if (abs < 999_500) return `${trim(n / 1000)}k`;
  if (abs < 999_500_000) return `${trim(n / 1_000_000)}M`;
  return `${trim(n / 1_000_000_000)}B`;
}

function trim(x: number): string {
  const digits = Math.abs(x) < 10 ? 2 : Math.abs(x) < 100 ? 1 : 0;
  return x.toFixed(digits).replace(/\.0+$|(\.\d*?)0+$/, '$1');
}

/** USD: "$0" for nothing, "<$0.01" for dust, cents below $100, whole dollars above; null (unknown price) → "$?". */
export function formatCost(usd: number | null): string {
  if (usd === null || !Number.isFinite(usd)) return '$?';
  if (usd === 0) return '$0';
  if (usd < 0.01) return '<$0.01';
  if (usd < 100) return `$${usd.toFixed(2)}`;
  return `$${Math.round(usd).toLocaleString('en-US')}`;
}

/**
 * A total that may include requests at an unknown price: those count as unknown, never as $0, so
 * "$?" when every request was unpriced and "$0.50+?" (at least that much) when some were.
 */
export function formatSpend(usd: number, unpricedRequests: number): string {
  if (unpricedRequests <= 0) return formatCost(usd);
  return usd === 0 ? '$?' : `${formatCost(usd)}+?`;
}

/** Exact USD for tooltips and the detail view: up to 6 decimals, no trailing zeros. */
export function formatCostExact(usd: number | null): string {
  if (usd === null || !Number.isFinite(usd)) return 'unknown price';
  return `$${usd.toFixed(6).replace(/\.?0+$/, '')}`;
}

/** Time since `iso` at `now`: "just now", "42s", "5m", "3h", "2d". */
export function formatAge(iso: string, now: number): string {
  const ms = now - Date.parse(iso);
  if (!Number.isFinite(ms)) return '';
  const s = Math.floor(ms / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s}s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ago`;
  return `${Math.floor(h / 24)}d ago`;
}

/** 850 → "850 ms", 12_300 → "12.3 s", 125_000 → "2m 5s". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${trim(ms / 1000)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m}m ${Math.round((ms % 60_000) / 1000)}s`;
}

/** The period a status bar shows, as words. */
export function periodLabel(period: 'day' | 'week' | 'month'): string {
  switch (period) {
    case 'day':
      return 'today';
    case 'week':
      return 'this week';
    case 'month':
      return 'this month';
  }
}

/**
 * Text shown literally in a VS Code notification. Notifications turn `[label](command:…)`,
 * `(https://…)` and `(file:…)` into links, and command links run when clicked with whatever
 * arguments the link carries; a zero-width space between `]` and `(` keeps the text as it reads
 * but is no link (src/vs/base/common/linkedText.ts needs the two adjacent).
 */
export function plainNotificationText(s: string): string {
  return s.replace(/\]\(/g, ']\u200b(');
}
