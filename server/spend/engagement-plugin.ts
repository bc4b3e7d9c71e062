import { Readable } from 'node:stream';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ENGAGEMENT_SORTS, type EngagementReport, type EngagementSort } from '../../shared/engagement';
import type { Capability, Core } from '../capability';
import type { Clock } from '../clock';
import { hourWindow } from '../core/rollup';
import { BridgeError } from '../errors';
import { Instant } from '../http/instant';
import type { Store } from '../store/types';
import { engagementCsvHeader, engagementCsvRow, engagementRows } from './engagement-report';
import { periodEnd, periodStart } from './periods';

const UsersQuery = Type.Object(
  {
    period: Type.Union([Type.Literal('day'), Type.Literal('week'), Type.Literal('month')], {
      default: 'month',
    }),
    since: Type.Optional(Instant),
    until: Type.Optional(Instant),
    sort: Type.Union(
      ENGAGEMENT_SORTS.map((s) => Type.Literal(s)),
      { default: 'cost' },
    ),
    order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])),
    team: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    format: Type.Union([Type.Literal('json'), Type.Literal('csv')], { default: 'json' }),
  },
  { additionalProperties: false },
);
type UsersQueryT = Static<typeof UsersQuery> & { sort: EngagementSort };

/**
 * Who uses the bridge and who does not (docs/spend.md, "Power users and least engaged users"):
 * every provisioned user with their usage in a period, from the hourly rollups and the per-user
 * last-request rollup, never from a scan of the records.
 */
export function engagementRoutes(store: Store, clock: Clock): FastifyPluginAsync {
  return async (app) => {
    app.get<{ Querystring: UsersQueryT }>(
      '/api/v1/usage/users',
      { config: { access: 'admin' }, schema: { querystring: UsersQuery } },
      async (req, reply) => {
        const q = req.query;
        const now = new Date(clock.now());
        // The period gives the default window; `since` and `until` each replace its bound.
        const window = hourWindow(
          q.since ?? periodStart(q.period, now).toISOString(),
          q.until ?? periodEnd(q.period, now).toISOString(),
        ) as { since: string; until: string };
        if (window.since >= window.until)
          throw new BridgeError(
            'invalid_request',
            `since (${window.since}) must be before until (${window.until}).`,
          );
        const users = (await store.listUsers()).filter((u) => q.team === undefined || u.team === q.team);
        const [lastRequests, buckets] = await Promise.all([
          store.lastRequestAt(),
          store.usageBuckets(window),
        ]);
        // Text sorts up, numbers and dates down (most first), unless the caller says otherwise.
        const order = q.order ?? (q.sort === 'email' ? 'asc' : 'desc');
        const rows = engagementRows(users, buckets, lastRequests, q.sort, order);
        if (q.format === 'csv') {
          const lines = (function* () {
            yield engagementCsvHeader();
            for (const r of rows) yield engagementCsvRow(r);
          })();
          return reply
            .type('text/csv; charset=utf-8')
            .header('content-disposition', `attachment; filename="usage-by-user-${q.period}.csv"`)
            .send(Readable.from(lines));
        }
        const report: EngagementReport = {
          period: q.period,
          since: window.since,
          until: window.until,
          sort: q.sort,
          order,
          team: q.team ?? null,
          rows,
        };
        return report;
      },
    );
  };
}

export function engagementCapability(core: Core): Capability {
  return { routes: engagementRoutes(core.store, core.clock) };
}
