import { Readable } from 'node:stream';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { MEMBER_UNREAD_RULES, periodly } from '../../shared/spend';
import type { AlertService } from '../alerts/alert-service';
import { hourWindow } from '../core/rollup';
import { BridgeError, isBridgeError } from '../errors';
import { principalOf } from '../http/access';
import { Instant } from '../http/instant';
import type { IdentityService } from '../identity/identity-service';
import type { Store } from '../store/types';
import type { Budgets } from './budgets';
import type { ModelPolicies } from './model-policy';
import { periodEnd, periodStart } from './periods';
import { PriceBody, type PriceBodyT, PriceBook } from './prices';
import type { RateLimiter } from './rate-limits';
import { csvHeader, csvRow, topUsers, usageReport } from './usage-report';

const Period = Type.Union([Type.Literal('day'), Type.Literal('week'), Type.Literal('month')]);

const UsageQuery = Type.Object(
  {
    groupBy: Type.Union(
      ['user', 'team', 'model', 'client', 'day'].map((g) => Type.Literal(g)),
      { default: 'user' },
    ),
    since: Type.Optional(Instant),
    until: Type.Optional(Instant),
    user: Type.Optional(Type.String({ minLength: 1, maxLength: 320 })),
    team: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    format: Type.Union([Type.Literal('json'), Type.Literal('csv')], { default: 'json' }),
  },
  { additionalProperties: false },
);
type UsageQueryT = Static<typeof UsageQuery> & { groupBy: 'user' | 'team' | 'model' | 'client' | 'day' };

const TopQuery = Type.Object(
  {
    by: Type.Union([Type.Literal('cost'), Type.Literal('tokens'), Type.Literal('requests')], {
      default: 'cost',
    }),
    since: Type.Optional(Instant),
    until: Type.Optional(Instant),
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 10 }),
  },
  { additionalProperties: false },
);

const MeQuery = Type.Object(
  { period: Type.Union([Period], { default: 'day' }) },
  { additionalProperties: false },
);

const BudgetScopeT = Type.Union([
  Type.Literal('user'),
  Type.Literal('team'),
  Type.Literal('org'),
  Type.Literal('session'),
]);
/** A calendar period; session caps run for the session's life (`session`, the default for them). */
const BudgetPeriodT = Type.Union([Period, Type.Literal('session')]);

const BudgetBody = Type.Object(
  {
    scope: BudgetScopeT,
    subject: Type.Optional(Type.String({ minLength: 1, maxLength: 320 })),
    period: Type.Optional(BudgetPeriodT),
    limitUsd: Type.Number({ minimum: 0 }),
    action: Type.Union([Type.Literal('alert'), Type.Literal('block')], { default: 'alert' }),
    thresholds: Type.Optional(
      Type.Array(Type.Number({ exclusiveMinimum: 0, maximum: 10 }), { minItems: 1, maxItems: 20 }),
    ),
  },
  { additionalProperties: false },
);

const BudgetSelector = Type.Object(
  {
    scope: BudgetScopeT,
    subject: Type.Optional(Type.String({ minLength: 1, maxLength: 320 })),
    period: Type.Optional(BudgetPeriodT),
  },
  { additionalProperties: false },
);

const RateLimitBody = Type.Object(
  {
    scope: Type.Union([Type.Literal('user'), Type.Literal('key')]),
    subject: Type.String({ minLength: 1, maxLength: 320 }),
    rpm: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
    tpm: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
  },
  { additionalProperties: false },
);

const PolicyBody = Type.Object(
  {
    allow: Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 200, default: [] }),
    deny: Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 200, default: [] }),
  },
  { additionalProperties: false },
);

const AlertQuery = Type.Object(
  {
    since: Type.Optional(Instant),
    user: Type.Optional(Type.String({ minLength: 1, maxLength: 320 })),
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  },
  { additionalProperties: false },
);

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });
const TeamParams = Type.Object({ team: Type.String({ minLength: 1, maxLength: 100 }) });
const ModelParams = Type.Object({ model: Type.String({ minLength: 1, maxLength: 200 }) });

export interface SpendDeps {
  identity: IdentityService;
  store: Store;
  prices: PriceBook;
  budgets: Budgets;
  limiter: RateLimiter;
  policies: ModelPolicies;
  alerts: AlertService;
}

type PeriodT = 'day' | 'week' | 'month';

/** Session caps run for the session's life; every other budget needs a calendar period. */
function periodFor(scope: string, period: string | undefined): PeriodT | 'session' {
  if (scope === 'session') {
    if (period !== undefined && period !== 'session')
      throw new BridgeError(
        'invalid_request',
        'A session cap runs for the session\'s life: period must be "session" or left out.',
      );
    return 'session';
  }
  if (period === undefined || period === 'session')
    throw new BridgeError('invalid_request', `A ${scope} budget needs a period: day, week or month.`);
  return period as PeriodT;
}

const iso = (v: string | undefined): string | undefined =>
  v === undefined ? undefined : new Date(v).toISOString();

/** Usage, prices, budgets, rate limits, model policies and alerts under `/api/v1`. */
export function spendRoutes(d: SpendDeps): FastifyPluginAsync {
  const { identity, store, prices, budgets, limiter, policies, alerts } = d;

  /** An email or a bridge user id (`usr_` and 20 hex digits), as users are named. */
  const looksLikeUser = (subject: string): boolean =>
    subject.includes('@') || /^usr_[0-9a-f]{20}$/.test(subject);
  const teamExists = async (team: string): Promise<boolean> =>
    (await store.listUsers()).some((u) => u.team === team);

  /**
   * A budget's subject as stored (a user's id) and as shown (their email). A session cap's subject
   * is optional, and a user (by email or id) if there is one by that name, else a team.
   */
  async function subjectOf(
    scope: string,
    subject: string | undefined,
    /** Writing a cap: a subject written as a user (an email, a user id) must name one. */
    writing = false,
  ): Promise<{ id: string; label: string; kind?: 'user' | 'team' }> {
    if (scope === 'org') return { id: '*', label: 'org' };
    if (scope === 'session') {
      if (subject === undefined || subject === '*') return { id: '*', label: 'every session' };
      const u = await identity.findUser(subject).catch((err: unknown) => {
        if (isBridgeError(err) && err.code === 'user_not_found') return undefined;
        throw err;
      });
      if (u) return { id: u.id, label: u.email, kind: 'user' };
      // A mistyped email, or a user not provisioned yet, would otherwise become a cap on a team of
      // that name nobody is in: stored, listed, and never applied.
      if (writing && looksLikeUser(subject) && !(await teamExists(subject)))
        throw new BridgeError(
          'user_not_found',
          `No user ${subject}: a session cap's subject is a user's email or id (create the user first) or a team name.`,
        );
      return { id: subject, label: subject, kind: 'team' };
    }
    if (!subject) throw new BridgeError('invalid_request', `A ${scope} budget needs a subject.`);
    if (scope === 'user') {
      const u = await identity.findUser(subject);
      return { id: u.id, label: u.email };
    }
    return { id: subject, label: subject };
  }

  return async (app) => {
    app.get<{ Querystring: UsageQueryT }>(
      '/api/v1/usage',
      { config: { access: 'admin' }, schema: { querystring: UsageQuery } },
      async (req, reply) => {
        const q = req.query;
        const window = hourWindow(iso(q.since), iso(q.until));
        const userId = q.user === undefined ? undefined : (await identity.findUser(q.user)).id;
        const buckets = await store.usageBuckets({ ...window, userId, team: q.team });
        const report = await usageReport(buckets, q.groupBy, window);
        if (q.format === 'json') return report;
        const lines = (function* () {
          yield csvHeader();
          for (const r of report.rows) yield csvRow(r);
        })();
        return reply
          .type('text/csv; charset=utf-8')
          .header('content-disposition', `attachment; filename="usage-by-${q.groupBy}.csv"`)
          .send(Readable.from(lines));
      },
    );

    app.get<{ Querystring: Static<typeof TopQuery> }>(
      '/api/v1/usage/top',
      { config: { access: 'admin' }, schema: { querystring: TopQuery } },
      async (req) => {
        const q = req.query;
        const window = hourWindow(iso(q.since), iso(q.until));
        const { total, rows } = await topUsers(await store.usageBuckets(window), q.by, q.limit);
        return { by: q.by, since: window.since ?? null, until: window.until ?? null, total, rows };
      },
    );

    app.get<{ Querystring: Static<typeof MeQuery> }>(
      '/api/v1/usage/me',
      { config: { access: 'member' }, schema: { querystring: MeQuery } },
      async (req) => {
        const { user } = principalOf(req);
        const now = new Date();
        const since = periodStart(req.query.period, now).toISOString();
        const until = periodEnd(req.query.period, now).toISOString();
        const buckets = await store.usageBuckets({ userId: user.id, since, until });
        const byModel = await usageReport(buckets, 'model', { since, until });
        return {
          period: req.query.period,
          since,
          until,
          ...byModel.totals,
          byModel: byModel.rows,
          budgets: await budgets.forUser(user),
        };
      },
    );

    app.get('/api/v1/prices', { config: { access: 'member' } }, async () => ({
      source: prices.source,
      overrides: prices.listOverrides(),
    }));

    app.get('/api/v1/prices/unknown', { config: { access: 'admin' } }, async () => ({
      items: prices.listUnknown(),
    }));

    app.put<{ Params: Static<typeof ModelParams>; Body: PriceBodyT }>(
      '/api/v1/prices/:model',
      { config: { access: 'admin' }, schema: { params: ModelParams, body: PriceBody } },
      async (req) => {
        const o = PriceBook.validateBody(req.params.model, req.body);
        await store.putDoc('price', o.model, o);
        prices.setOverride(o);
        return o;
      },
    );

    app.delete<{ Params: Static<typeof ModelParams> }>(
      '/api/v1/prices/:model',
      { config: { access: 'admin' }, schema: { params: ModelParams } },
      async (req) => {
        const existing = prices.listOverrides().find((o) => o.model === req.params.model);
        if (!existing) throw new BridgeError('price_not_found', `No price override for ${req.params.model}.`);
        await store.deleteDoc('price', existing.model);
        prices.deleteOverride(existing.model);
        return existing;
      },
    );

    app.get('/api/v1/budgets', { config: { access: 'admin' } }, async () => ({
      items: await budgets.list(),
    }));

    app.get<{ Params: Static<typeof IdParams> }>(
      '/api/v1/budgets/:id',
      { config: { access: 'admin' }, schema: { params: IdParams } },
      async (req) => budgets.get(req.params.id),
    );

    app.put<{ Body: Static<typeof BudgetBody> }>(
      '/api/v1/budgets',
      { config: { access: 'admin' }, schema: { body: BudgetBody } },
      async (req) => {
        const b = req.body;
        const period = periodFor(b.scope, b.period);
        const subject = await subjectOf(b.scope, b.subject, true);
        const common = { limitUsd: b.limitUsd, action: b.action ?? 'alert', thresholds: b.thresholds };
        return budgets.put(
          b.scope === 'session'
            ? {
                ...common,
                scope: 'session',
                subject: subject.id,
                subjectKind: subject.kind,
                period: 'session',
              }
            : { ...common, scope: b.scope, subject: subject.id, period: period as PeriodT },
          subject.label,
        );
      },
    );

    app.delete<{ Params: Static<typeof IdParams> }>(
      '/api/v1/budgets/:id',
      { config: { access: 'admin' }, schema: { params: IdParams } },
      async (req) => budgets.delete(req.params.id),
    );

    app.delete<{ Querystring: Static<typeof BudgetSelector> }>(
      '/api/v1/budgets',
      { config: { access: 'admin' }, schema: { querystring: BudgetSelector } },
      async (req) => {
        const q = req.query;
        const period = periodFor(q.scope, q.period);
        const subject = await subjectOf(q.scope, q.subject);
        const found = (await budgets.list()).find(
          (b) => b.scope === q.scope && b.subject === subject.id && b.period === period,
        );
        if (!found)
          throw new BridgeError(
            'budget_not_found',
            q.scope === 'session'
              ? `No session cap for ${subject.label}.`
              : `No ${periodly(period)} ${q.scope} budget for ${subject.label}.`,
          );
        return budgets.delete(found.id);
      },
    );

    app.get('/api/v1/rate-limits', { config: { access: 'admin' } }, async () => ({ items: limiter.list() }));

    app.put<{ Body: Static<typeof RateLimitBody> }>(
      '/api/v1/rate-limits',
      { config: { access: 'admin' }, schema: { body: RateLimitBody } },
      async (req) => {
        const b = req.body;
        const rpm = b.rpm ?? null;
        const tpm = b.tpm ?? null;
        if (rpm === null && tpm === null) throw new BridgeError('invalid_request', 'Give rpm, tpm or both.');
        let subject = b.subject;
        if (b.scope === 'user') subject = (await identity.findUser(b.subject)).id;
        else if (!(await store.getKey(b.subject)))
          throw new BridgeError('key_not_found', `No key ${b.subject}.`);
        return limiter.put(b.scope, subject, rpm, tpm);
      },
    );

    app.delete<{ Params: Static<typeof IdParams> }>(
      '/api/v1/rate-limits/:id',
      { config: { access: 'admin' }, schema: { params: IdParams } },
      async (req) => limiter.delete(req.params.id),
    );

    app.get('/api/v1/model-policies', { config: { access: 'admin' } }, async () => ({
      items: policies.list(),
    }));

    app.get<{ Params: Static<typeof TeamParams> }>(
      '/api/v1/teams/:team/models',
      { config: { access: 'admin' }, schema: { params: TeamParams } },
      async (req) => policies.get(req.params.team),
    );

    app.put<{ Params: Static<typeof TeamParams>; Body: Static<typeof PolicyBody> }>(
      '/api/v1/teams/:team/models',
      { config: { access: 'admin' }, schema: { params: TeamParams, body: PolicyBody } },
      async (req) => policies.put(req.params.team, req.body.allow ?? [], req.body.deny ?? []),
    );

    app.delete<{ Params: Static<typeof TeamParams> }>(
      '/api/v1/teams/:team/models',
      { config: { access: 'admin' }, schema: { params: TeamParams } },
      async (req) => policies.delete(req.params.team),
    );

    app.get<{ Querystring: Static<typeof AlertQuery> }>(
      '/api/v1/alerts',
      { config: { access: 'member' }, schema: { querystring: AlertQuery } },
      async (req) => {
        const { user } = principalOf(req);
        const q = req.query;
        let userId: string | undefined;
        if (user.role !== 'admin') {
          if (q.user !== undefined && q.user !== user.id && q.user.toLowerCase() !== user.email) {
            throw new BridgeError('forbidden', 'Members may read only their own alerts.');
          }
          userId = user.id;
        } else if (q.user !== undefined) userId = (await identity.findUser(q.user)).id;
        const exceptRules = user.role === 'admin' ? undefined : MEMBER_UNREAD_RULES;
        return { items: await alerts.list({ since: iso(q.since), userId, exceptRules, limit: q.limit }) };
      },
    );
  };
}
