import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { CACHE_BREAK_CAUSES, type CacheBreakCause } from '../../shared/interception';
import { roundUsd } from '../core/rollup';
import { principalOf } from '../http/access';
import { periodEnd, periodStart } from '../spend/periods';
import type { Store } from '../store/types';
import type { ScanPlaces } from './scan-places';

const CacheBreakQuery = Type.Object(
  {
    period: Type.Union([Type.Literal('day'), Type.Literal('week'), Type.Literal('month')], {
      default: 'month',
    }),
    groupBy: Type.Union([Type.Literal('user'), Type.Literal('team')], { default: 'user' }),
  },
  { additionalProperties: false },
);

/** One row of `GET /api/v1/cache-breaks`: a user's or team's prompt-cache breaks in the period. */
export interface CacheBreakRow {
  /** The user's email, or the team (`(none)` for users without one). */
  key: string;
  breaks: number;
  /** Excess spend from the breaks whose price is known. */
  cacheBreakExcessUsd: number;
  /** Breaks on models without a known price, not in `cacheBreakExcessUsd`. */
  unpricedBreaks: number;
  byCause: Record<CacheBreakCause, number>;
}

function emptyRow(key: string): CacheBreakRow {
  return {
    key,
    breaks: 0,
    cacheBreakExcessUsd: 0,
    unpricedBreaks: 0,
    byCause: Object.fromEntries(CACHE_BREAK_CAUSES.map((c) => [c, 0])) as Record<CacheBreakCause, number>,
  };
}

/**
 * "Excess spend from cache breaks this month" per user or team (docs/governance.md). Members see
 * only their own breaks. Reads the period's records: breaks are rare fields on them, not rolled up.
 */
export function cacheBreakRoutes(store: Store, now: () => Date, places: ScanPlaces): FastifyPluginAsync {
  return async (app) => {
    app.get<{ Querystring: Static<typeof CacheBreakQuery> }>(
      '/api/v1/cache-breaks',
      // It reads every record of the period: held to the user's places as the other whole-range reads.
      { config: { access: 'member' }, schema: { querystring: CacheBreakQuery } },
      places.guard(async (req) => {
        const { period, groupBy } = req.query;
        const me = principalOf(req).user;
        const at = now();
        const since = periodStart(period, at).toISOString();
        const until = periodEnd(period, at).toISOString();
        const rows = new Map<string, CacheBreakRow>();
        const totals = emptyRow('total');
        const filter = { since, until, ...(me.role === 'admin' ? {} : { userId: me.id }) };
        for await (const r of store.scanInterceptions(filter)) {
          const brk = r.cacheBreak;
          if (!brk) continue;
          const key = groupBy === 'user' ? r.userEmail : (r.team ?? '(none)');
          let row = rows.get(key);
          if (!row) {
            row = emptyRow(key);
            rows.set(key, row);
          }
          for (const x of [row, totals]) {
            x.breaks++;
            x.byCause[brk.cause]++;
            if (brk.excessUsd === null) x.unpricedBreaks++;
            else x.cacheBreakExcessUsd += brk.excessUsd;
          }
        }
        const round = (x: CacheBreakRow): CacheBreakRow => ({
          ...x,
          cacheBreakExcessUsd: roundUsd(x.cacheBreakExcessUsd),
        });
        return {
          period,
          groupBy,
          since,
          until,
          rows: [...rows.values()].map(round).sort((a, b) => b.cacheBreakExcessUsd - a.cacheBreakExcessUsd),
          totals: round(totals),
        };
      }),
    );
  };
}
