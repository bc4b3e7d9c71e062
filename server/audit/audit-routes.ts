import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { CacheBreakCause, GatewayToolCall, Interception } from '../../shared/interception';
import { addUsage, emptyUsage, totalTokens, type Usage } from '../../shared/usage';
import { roundUsd } from '../core/rollup';
import { BridgeError } from '../errors';
import { principalOf } from '../http/access';
import { csvLine } from '../http/csv';
import { Instant } from '../http/instant';
import type { IdentityService } from '../identity/identity-service';
import { argumentsMatch, textSearch, toolMatcher } from '../store/search-text';
import type { InterceptionFilter, Store } from '../store/types';
import type { CapturePolicy } from './capture';
import { verifyStoredChain } from './chain-anchor';
import type { ScanPlaces } from './scan-places';

const Status = Type.Union([Type.Literal('ok'), Type.Literal('error'), Type.Literal('client_aborted')]);
const Text = (max: number) => Type.String({ minLength: 1, maxLength: max });

const FilterFields = {
  user: Type.Optional(Text(320)),
  provider: Type.Optional(Text(50)),
  model: Type.Optional(Text(200)),
  client: Type.Optional(Text(100)),
  team: Type.Optional(Text(100)),
  session: Type.Optional(Text(200)),
  tool: Type.Optional(Text(200)),
  status: Type.Optional(Status),
  q: Type.Optional(Text(500)),
  since: Type.Optional(Instant),
  until: Type.Optional(Instant),
};

const InterceptionQuery = Type.Object(
  {
    ...FilterFields,
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
    cursor: Type.Optional(Text(200)),
  },
  { additionalProperties: false },
);

const ExportQuery = Type.Object(
  {
    ...FilterFields,
    format: Type.Union([Type.Literal('jsonl'), Type.Literal('csv')], { default: 'jsonl' }),
    /** Which records: model requests (the hash-chained interceptions) or MCP gateway tool calls. */
    kind: Type.Union([Type.Literal('interceptions'), Type.Literal('gateway-calls')], {
      default: 'interceptions',
    }),
  },
  { additionalProperties: false },
);

const SessionQuery = Type.Object(
  {
    user: Type.Optional(Text(320)),
    since: Type.Optional(Instant),
    until: Type.Optional(Instant),
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  },
  { additionalProperties: false },
);

const ToolCallQuery = Type.Object(
  {
    tool: Type.Optional(Text(200)),
    server: Type.Optional(Text(200)),
    user: Type.Optional(Text(320)),
    /** Text in the call's arguments (a command, a path), as `q` finds text in a prompt. */
    q: Type.Optional(Text(500)),
    since: Type.Optional(Instant),
    until: Type.Optional(Instant),
    /** `client`: calls the model made for the agent to run; `injected`: the bridge ran them; `gateway`: agents called the MCP gateway. */
    via: Type.Optional(
      Type.Union([Type.Literal('client'), Type.Literal('injected'), Type.Literal('gateway')]),
    ),
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  },
  { additionalProperties: false },
);

const IdParams = Type.Object({ id: Text(100) });
const TeamParams = Type.Object({ team: Text(100) });
const CaptureBody = Type.Object(
  { level: Type.Union([Type.Literal('none'), Type.Literal('prompt'), Type.Literal('full')]) },
  { additionalProperties: false },
);

/**
 * A record as its own member reads it: without the chain's links. Each record's `prevHash` is the
 * hash of the record before it in the store, another user's as often as not, so a member could tie
 * their records to others' and count them; verifying the chain is an admin's (audit verify).
 */
function ownView(rec: Interception): Interception {
  const { hash: _hash, prevHash: _prevHash, ...rest } = rec;
  return rest;
}

/** A chain head kept outside the bridge, as verify reported it: `<seq>:<hash>`. */
const VerifyQuery = Type.Object(
  { kept: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}:[0-9a-f]{64}$' })) },
  { additionalProperties: false },
);

const AccessLogQuery = Type.Object(
  { since: Type.Optional(Instant), limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }) },
  { additionalProperties: false },
);

type FilterQuery = { [K in keyof typeof FilterFields]?: string };

function iso(v: string | undefined): string | undefined {
  return v === undefined ? undefined : new Date(v).toISOString();
}

const CSV_COLUMNS = [
  'seq',
  'id',
  'startedAt',
  'endedAt',
  'userEmail',
  'team',
  'provider',
  'api',
  'model',
  'client',
  'sessionId',
  'status',
  'httpStatus',
  'input',
  'output',
  'cacheRead',
  'cacheWrite',
  'reasoning',
  'costUsd',
  'keyName',
  'attempts',
  'tools',
  'prompt',
  'hash',
] as const;

const GATEWAY_CSV_COLUMNS = [
  'id',
  'at',
  'userEmail',
  'team',
  'keyId',
  'client',
  'sessionId',
  'name',
  'server',
  'tool',
  'outcome',
  'durationMs',
  'resultBytes',
  'error',
  'policy',
  'input',
  'kind',
] as const;

function gatewayCallCsv(c: GatewayToolCall): string {
  return csvLine([
    c.id,
    c.at,
    c.userEmail,
    c.team,
    c.keyId,
    c.client,
    c.sessionId,
    c.name,
    c.server,
    c.tool,
    c.outcome,
    c.durationMs,
    c.resultBytes,
    c.error,
    c.policy ? JSON.stringify(c.policy) : null,
    JSON.stringify(c.input),
    c.kind ?? 'tool',
  ]);
}

function interceptionCsv(r: Interception): string {
  const u = r.usage;
  const cells = [
    r.seq,
    r.id,
    r.startedAt,
    r.endedAt,
    r.userEmail,
    r.team,
    r.provider,
    r.api,
    r.model,
    r.client,
    r.sessionId,
    r.status,
    r.httpStatus,
    u.input,
    u.output,
    u.cacheRead,
    u.cacheWrite,
    u.reasoning,
    r.costUsd,
    r.keyName ?? null,
    // Failed attempts before the recorded one (failover): instance/model:status, in order.
    (r.attempts ?? []).map((a) => `${a.provider}/${a.model ?? ''}:${a.httpStatus}`).join(' '),
    r.toolCalls.map((c) => c.name).join(' '),
    r.prompt,
    r.hash,
  ];
  return csvLine(cells);
}

/**
 * One export line. JSON leaves DEL, the C1 controls (U+0080–U+009F), U+2028 and U+2029 raw; they
 * are escaped here: a C1 control such as U+009B (CSI) acts on the terminal of an admin reading an
 * export there, and readers that split lines on U+0085, U+2028 or U+2029 (Python's
 * `str.splitlines()`) would break a member's record into pieces and, skipping what does not parse,
 * lose it. The values parse back unchanged.
 */
function jsonLine(v: unknown): string {
  return `${JSON.stringify(v).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`;
}

/** Interceptions, sessions, tool calls, export and chain verification; members see only their own. */
export function auditRoutes(
  identity: IdentityService,
  store: Store,
  capture: CapturePolicy,
  places: ScanPlaces,
): FastifyPluginAsync {
  /** The user a query may see: members only themselves, admins whoever they name (or everyone). */
  async function scopeUser(req: FastifyRequest, user: string | undefined): Promise<string | undefined> {
    const me = principalOf(req).user;
    if (me.role !== 'admin') {
      if (user !== undefined && user !== me.id && user.toLowerCase() !== me.email) {
        throw new BridgeError('forbidden', 'Members may read only their own records.');
      }
      return me.id;
    }
    return user === undefined ? undefined : (await identity.findUser(user)).id;
  }

  /** An admin reading anyone's records but their own leaves a trace in the access log. */
  function logRead(req: FastifyRequest, subjectUserId: string | null | undefined): void {
    const me = principalOf(req).user;
    if (me.role !== 'admin' || subjectUserId === me.id) return;
    const query = Object.fromEntries(
      Object.entries((req.query ?? {}) as Record<string, unknown>).map(([k, v]) => [k, String(v)]),
    );
    store
      .appendAccessLog({
        id: `acc_${randomUUID()}`,
        at: new Date().toISOString(),
        adminId: me.id,
        adminEmail: me.email,
        route: `${req.method} ${req.routeOptions.url ?? req.url}`,
        subjectUserId: subjectUserId ?? null,
        query,
      })
      .catch((err: unknown) => req.log.error({ err }, 'failed to record an admin read'));
  }

  async function filterFrom(req: FastifyRequest, q: FilterQuery): Promise<InterceptionFilter> {
    return {
      userId: await scopeUser(req, q.user),
      provider: q.provider,
      model: q.model,
      client: q.client,
      team: q.team,
      sessionId: q.session,
      tool: q.tool,
      status: q.status as InterceptionFilter['status'],
      q: q.q,
      since: iso(q.since),
      until: iso(q.until),
    };
  }

  return async (app) => {
    app.get<{ Querystring: Static<typeof InterceptionQuery> }>(
      '/api/v1/interceptions',
      {
        config: { access: 'member' },
        schema: { querystring: InterceptionQuery },
      },
      // A text search reads records until a page matches; the others read one page.
      places.guard(
        async (req) => {
          const filter = await filterFrom(req, req.query);
          logRead(req, filter.userId);
          const page = await store.listInterceptions(filter, req.query.limit, req.query.cursor);
          return principalOf(req).user.role === 'admin' ? page : { ...page, items: page.items.map(ownView) };
        },
        (req) => req.query.q !== undefined,
      ),
    );

    app.get<{ Params: Static<typeof IdParams> }>(
      '/api/v1/interceptions/:id',
      { config: { access: 'member' }, schema: { params: IdParams } },
      async (req) => {
        const me = principalOf(req).user;
        const rec = await store.getInterception(req.params.id);
        // A member asking for someone else's record learns nothing, not even that it exists.
        if (!rec || (me.role !== 'admin' && rec.userId !== me.id)) {
          throw new BridgeError('not_found', `No interception ${req.params.id}.`);
        }
        logRead(req, rec.userId);
        return me.role === 'admin' ? rec : ownView(rec);
      },
    );

    app.get<{ Querystring: Static<typeof SessionQuery> }>(
      '/api/v1/sessions',
      { config: { access: 'member' }, schema: { querystring: SessionQuery } },
      places.guard(async (req) => {
        const q = req.query;
        const filter: InterceptionFilter = {
          userId: await scopeUser(req, q.user),
          since: iso(q.since),
          until: iso(q.until),
        };
        logRead(req, filter.userId);
        const sessions = new Map<
          string,
          {
            sessionId: string;
            userId: string;
            userEmail: string;
            client: string;
            requests: number;
            toolCalls: number;
            usage: Usage;
            costUsd: number;
            firstAt: string;
            lastAt: string;
            models: Set<string>;
            cacheBreaks: { interceptionId: string; cause: CacheBreakCause; excessUsd: number | null }[];
          }
        >();
        for await (const r of store.scanInterceptions(filter)) {
          if (r.sessionId === null) continue;
          const k = `${r.userId}\u0000${r.sessionId}`;
          let s = sessions.get(k);
          if (!s) {
            s = {
              sessionId: r.sessionId,
              userId: r.userId,
              userEmail: r.userEmail,
              client: r.client,
              requests: 0,
              toolCalls: 0,
              usage: emptyUsage(),
              costUsd: 0,
              firstAt: r.startedAt,
              lastAt: r.startedAt,
              models: new Set(),
              cacheBreaks: [],
            };
            sessions.set(k, s);
          }
          s.requests++;
          s.toolCalls += r.toolCalls.length;
          s.usage = addUsage(s.usage, r.usage);
          s.costUsd += r.costUsd ?? 0;
          s.lastAt = r.startedAt;
          if (r.model) s.models.add(r.model);
          if (r.cacheBreak)
            s.cacheBreaks.push({
              interceptionId: r.id,
              cause: r.cacheBreak.cause,
              excessUsd: r.cacheBreak.excessUsd,
            });
        }
        const items = [...sessions.values()]
          .sort((a, b) => (a.lastAt < b.lastAt ? 1 : -1))
          .slice(0, q.limit)
          .map((s) => ({
            ...s,
            models: [...s.models],
            tokens: totalTokens(s.usage),
            costUsd: roundUsd(s.costUsd),
          }));
        return { items };
      }),
    );

    app.get<{ Querystring: Static<typeof ToolCallQuery> }>(
      '/api/v1/tool-calls',
      { config: { access: 'member' }, schema: { querystring: ToolCallQuery } },
      places.guard(async (req) => {
        const q = req.query;
        const filter: InterceptionFilter = {
          userId: await scopeUser(req, q.user),
          tool: q.tool,
          since: iso(q.since),
          until: iso(q.until),
        };
        logRead(req, filter.userId);
        const isTool = q.tool === undefined ? undefined : toolMatcher(q.tool);
        const search = q.q === undefined ? undefined : textSearch(q.q);
        const items: ({ at: string } & Record<string, unknown>)[] = [];
        let cursor: string | undefined;
        // Newest first, page by page, until enough calls match.
        while (q.via !== 'gateway') {
          const page = await store.listInterceptions(filter, 200, cursor);
          for (const r of page.items) {
            for (const c of r.toolCalls) {
              if (isTool && !isTool(c.name)) continue;
              if (q.server !== undefined && c.server !== q.server) continue;
              if (q.via !== undefined && q.via !== (c.injected ? 'injected' : 'client')) continue;
              if (search && !argumentsMatch(c.input, search)) continue;
              items.push({
                ...c,
                // Client-side calls keep the shape they always had; injected ones say so twice.
                ...(c.injected ? { via: 'injected' as const } : {}),
                interceptionId: r.id,
                userId: r.userId,
                userEmail: r.userEmail,
                sessionId: r.sessionId,
                model: r.model,
                client: r.client,
              });
            }
          }
          if (items.length >= q.limit || page.nextCursor === null) break;
          cursor = page.nextCursor;
        }
        if (q.via === undefined || q.via === 'gateway') {
          const scope = {
            userId: filter.userId,
            server: q.server,
            name: q.tool,
            since: filter.since,
            until: filter.until,
          };
          const calls = search
            ? await newestMatching(store, scope, q.limit, (c) => argumentsMatch(c.input, search))
            : await store.listGatewayCalls({ ...scope, limit: q.limit });
          // Merged newest first; without gateway calls the order stays what it always was.
          for (const c of calls)
            items.push({ ...c, via: 'gateway', injected: false, interceptionId: null, model: null });
          if (calls.length > 0) items.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
        }
        return { items: items.slice(0, q.limit) };
      }),
    );

    /**
     * The newest `limit` gateway calls in range that `match`, newest first: a search of their
     * arguments reads every call in range (the stores list by name and server only), keeping the
     * newest matches as it goes.
     */
    async function newestMatching(
      from: Store,
      scope: { userId?: string; server?: string; name?: string; since?: string; until?: string },
      limit: number,
      match: (c: GatewayToolCall) => boolean,
    ): Promise<GatewayToolCall[]> {
      const kept: GatewayToolCall[] = [];
      for await (const c of from.scanGatewayCalls({
        since: scope.since,
        until: scope.until,
        userId: scope.userId,
      })) {
        if (scope.userId !== undefined && c.userId !== scope.userId) continue;
        if (scope.server !== undefined && c.server !== scope.server) continue;
        if (scope.name !== undefined && c.name !== scope.name) continue;
        if (!match(c)) continue;
        kept.push(c);
        // Oldest first: once twice the limit is kept, the older half can go.
        if (kept.length >= 2 * limit) kept.splice(0, kept.length - limit);
      }
      return kept.slice(-limit).reverse();
    }

    app.get<{ Querystring: Static<typeof ExportQuery> }>(
      '/api/v1/audit/export',
      { config: { access: 'member' }, schema: { querystring: ExportQuery } },
      places.guard(async (req, reply) => {
        const filter = await filterFrom(req, req.query);
        logRead(req, filter.userId);
        const csv = req.query.format === 'csv';
        const admin = principalOf(req).user.role === 'admin';
        async function* interceptions(): AsyncGenerator<string> {
          if (csv) yield csvLine(CSV_COLUMNS);
          for await (const r of store.scanInterceptions(filter)) {
            const view = admin ? r : ownView(r);
            yield csv ? interceptionCsv(view) : jsonLine(view);
          }
        }
        async function* gatewayCalls(): AsyncGenerator<string> {
          if (csv) yield csvLine(GATEWAY_CSV_COLUMNS);
          const scope = { since: filter.since, until: filter.until, userId: filter.userId };
          const isTool = filter.tool === undefined ? undefined : toolMatcher(filter.tool);
          for await (const c of store.scanGatewayCalls(scope)) {
            // The filters that mean something for a tool call; provider, model, status and q do not.
            if (filter.userId !== undefined && c.userId !== filter.userId) continue;
            if (filter.team !== undefined && c.team !== filter.team) continue;
            if (filter.client !== undefined && c.client !== filter.client) continue;
            if (filter.sessionId !== undefined && c.sessionId !== filter.sessionId) continue;
            if (isTool && !isTool(c.name) && !isTool(c.tool)) continue;
            yield csv ? gatewayCallCsv(c) : jsonLine(c);
          }
        }
        const gateway = req.query.kind === 'gateway-calls';
        const lines = gateway ? gatewayCalls : interceptions;
        const stamp = new Date().toISOString().replace(/[:.]/g, '-');
        return reply
          .type(csv ? 'text/csv; charset=utf-8' : 'application/x-ndjson')
          .header(
            'content-disposition',
            `attachment; filename="aibridge-${gateway ? 'gateway-calls' : 'audit'}-${stamp}.${csv ? 'csv' : 'jsonl'}"`,
          )
          .send(Readable.from(lines(), { objectMode: false, highWaterMark: 64 * 1024 }));
      }),
    );

    app.get<{ Querystring: Static<typeof AccessLogQuery> }>(
      '/api/v1/audit/access-log',
      { config: { access: 'admin' }, schema: { querystring: AccessLogQuery } },
      async (req) => ({
        items: await store.listAccessLog({ since: iso(req.query.since), limit: req.query.limit }),
      }),
    );

    app.get('/api/v1/audit/capture', { config: { access: 'admin' } }, async () => capture.list());

    app.put<{ Params: Static<typeof TeamParams>; Body: Static<typeof CaptureBody> }>(
      '/api/v1/teams/:team/capture',
      { config: { access: 'admin' }, schema: { params: TeamParams, body: CaptureBody } },
      async (req) => capture.put(req.params.team, req.body.level),
    );

    app.delete<{ Params: Static<typeof TeamParams> }>(
      '/api/v1/teams/:team/capture',
      { config: { access: 'admin' }, schema: { params: TeamParams } },
      async (req) => ({ deleted: await capture.delete(req.params.team), ...capture.list() }),
    );

    app.get<{ Querystring: Static<typeof VerifyQuery> }>(
      '/api/v1/audit/verify',
      { config: { access: 'admin' }, schema: { querystring: VerifyQuery } },
      (req) => {
        const kept = req.query.kept?.split(':');
        return verifyStoredChain(store, kept ? { seq: Number(kept[0]), hash: kept[1]! } : null);
      },
    );
  };
}
