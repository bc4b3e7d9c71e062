import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, LogController } from 'fastify';
import type { DestinationStream } from 'pino';
import type { ModelPriceOverride } from '../shared/spend';
import { adminRoutes } from './admin/admin-routes';
import { adminAssetRoutes, findAdminAssets } from './admin/assets';
import { browserSessions, RequestAuth } from './admin/browser-auth';
import { Sessions } from './admin/sessions';
import { AlertService } from './alerts/alert-service';
import { AnomalyWatcher } from './alerts/anomaly';
import { WebhookSender } from './alerts/webhook';
import { auditRoutes } from './audit/audit-routes';
import { CapturePolicy } from './audit/capture';
import { Recorder } from './audit/recorder';
import { Redactor } from './audit/redact';
import type { Config, UpstreamConfig } from './config';
import { BridgeError, fromFastifyError } from './errors';
import { EventBus } from './events/bus';
import { InterceptionEvents } from './events/interception-events';
import { relayBetweenReplicas } from './events/replica-relay';
import { LiveEvents, type LiveEventsOptions, liveEventsRoutes } from './events/ws-routes';
import { apiAccessHook } from './http/access-hook';
import { RouteTable } from './http/route-table';
import { Authenticator } from './identity/auth';
import { AuthThrottle } from './identity/auth-throttle';
import { identityRoutes } from './identity/identity-routes';
import { IdentityService } from './identity/identity-service';
import { KeyHasher, looksLikeKey } from './identity/keys';
import { McpHub } from './mcp/hub';
import { McpInjector } from './mcp/injector';
import { mcpRoutes } from './mcp/mcp-routes';
import { Metrics } from './metrics';
import { PROVIDERS, providerForPath } from './providers/registry';
import { CircuitBreakers } from './proxy/circuit-breaker';
import { providerRoutes } from './proxy/forward';
import { createUpstreamAgent } from './proxy/upstream';
import { Budgets } from './spend/budgets';
import { Governance } from './spend/governance';
import { ModelPolicies } from './spend/model-policy';
import { loadPricesFile, PriceBook } from './spend/prices';
import { RateLimiter } from './spend/rate-limits';
import { spendRoutes } from './spend/spend-routes';
import { createStore } from './store/create-store';
import type { Store } from './store/types';
import { ExchangeTelemetry } from './telemetry/exchange-telemetry';
import { Tracing } from './telemetry/tracing';

export interface BuildOptions {
  /** Where logs go (tests capture them); default stdout. */
  logStream?: DestinationStream;
  /** A store to use instead of the one the config selects. */
  store?: Store;
  /** Live events tuning (tests shorten the heartbeat). */
  liveEvents?: Partial<LiveEventsOptions>;
}

export interface Bridge {
  app: FastifyInstance;
  store: Store;
  identity: IdentityService;
  recorder: Recorder;
  bus: EventBus;
  metrics: Metrics;
  /** Every route with its access rule (tests walk it). */
  routes: RouteTable;
  /** MCP servers and connections (tests wait on `ready()`). */
  mcp: McpHub;
  /** Ends every exchange still open (streams get an error event); for when the shutdown grace is over. */
  endOpenExchanges(): number;
  /** Serves `/metrics` alone on another port (no auth: bind it where only Prometheus reaches); returns its URL. */
  listenMetrics(host: string, port: number): Promise<string>;
  /** Stops accepting, lets open streams finish, flushes every record, releases everything. */
  close(): Promise<void>;
}

const VERSION = '0.1.0';

/** How long a key the store confirmed stays usable while the store is unreachable (open mode only). */
const OUTAGE_KEY_MEMORY_MS = 15 * 60_000;

/** Compares secrets in constant time (digests make the lengths equal). */
function sameSecret(a: string, b: string): boolean {
  const d = (s: string): Buffer => createHash('sha256').update(s).digest();
  return timingSafeEqual(d(a), d(b));
}

/** Builds the whole bridge from a validated config. `main.ts` and the tests build the same thing. */
export async function buildApp(config: Config, opts: BuildOptions = {}): Promise<Bridge> {
  // Prices are data validated at start: a bad file stops the bridge before it listens.
  const filePrices = config.spend.pricesFile ? loadPricesFile(config.spend.pricesFile) : [];
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers["x-api-key"]',
          'req.headers.cookie',
          'headers.authorization',
        ],
        censor: '[redacted]',
      },
      ...(opts.logStream ? { stream: opts.logStream } : {}),
    },
    // One line per interception comes from the recorder; per-request access lines would double it.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimit,
    // Our own hook answers 503 while draining, in each route's error shape.
    return503OnClosing: false,
    requestIdHeader: false,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
    // Requests the router cannot even parse (bad percent-encoding) still get our error shape.
    frameworkErrors: (err, req, reply) => {
      const e = new BridgeError('invalid_request', `The request URL is malformed: ${err.message}`, {
        cause: err,
      });
      const provider = providerForPath(req.url);
      void (reply as FastifyReply)
        .code(e.status)
        .type('application/json')
        .send(provider ? provider.errorBody(e.status, e.code, e.message) : e.toBody());
    },
  });
  const store = opts.store ?? createStore(config, app.log);
  const routes = new RouteTable();
  routes.attach(app);
  await store.open().catch((err: unknown) => {
    throw new Error(`cannot open the ${store.kind} store: ${(err as Error).message}`, { cause: err });
  });

  const hasher = await KeyHasher.load(config.dataDir, config.keyHashSecret);
  const identity = new IdentityService(store, hasher);
  const metrics = new Metrics({ perUser: config.metricsPerUser });
  const auth = new Authenticator(
    store,
    hasher,
    new AuthThrottle(config.authFailuresPerMinute),
    () => new Date(),
    () => metrics.authFailures.inc(),
    // AIBRIDGE_AUDIT_FAILURE=open serves through a database outage, for keys confirmed recently.
    config.auditFailure === 'open' ? OUTAGE_KEY_MEMORY_MS : undefined,
  );
  const tracing = new Tracing(config.tracing);
  const bus = new EventBus(app.log);
  const prices = new PriceBook([...filePrices, ...(await store.listDocs<ModelPriceOverride>('price'))]);
  for (const b of await store.usageBuckets({})) {
    if (b.unpricedRequests > 0)
      prices.noteUnknown(b.provider, b.model ?? '(none)', b.unpricedRequests, b.hour);
  }
  const recorder = new Recorder(
    store,
    app.log,
    prices,
    metrics,
    {
      failMode: config.auditFailure,
      retryMs: 1000,
      retryLimit: config.auditQueueLimit,
    },
    new Redactor(config.redactPatterns),
  );
  const dispatcher = createUpstreamAgent(config.timeouts);
  const breakers = new CircuitBreakers(config.breaker);
  metrics.breakerSource = () => breakers.snapshot();
  const webhook = config.alerts.webhookUrl
    ? new WebhookSender(
        {
          url: config.alerts.webhookUrl,
          attempts: config.alerts.webhookAttempts,
          backoffMs: config.alerts.webhookBackoffMs,
        },
        app.log,
        metrics,
      )
    : undefined;
  const alerts = new AlertService(store, bus, app.log, metrics, webhook);
  const capture = new CapturePolicy(store, config.auditCapture);
  await capture.load();
  const policies = new ModelPolicies(store);
  await policies.load();
  const limiter = new RateLimiter(store, { rpm: config.spend.defaultRpm, tpm: config.spend.defaultTpm });
  await limiter.load();
  const budgets = new Budgets(
    store,
    alerts,
    () => new Date(),
    (err) => app.log.error({ err }, 'budget ledger unavailable'),
    config.auditFailure === 'open',
  );
  await budgets.load((id) => store.getUserById(id));
  const governance = new Governance(
    policies,
    limiter,
    budgets,
    prices,
    metrics,
    config.spend.defaultMaxOutputTokens,
  );
  const anomalies = new AnomalyWatcher(store, alerts, config.alerts);
  // Replicas on one database (docs/storage.md): events cross between them, changed documents reload.
  const stopRelay = relayBetweenReplicas({
    bus,
    store,
    onError: (err, context) => app.log.error({ err }, `replica relay: ${context}`),
    reload: async (kind) => {
      switch (kind) {
        case 'budget':
          return budgets.reload((id) => store.getUserById(id));
        case 'price':
          return prices.replaceOverrides([
            ...filePrices,
            ...(await store.listDocs<ModelPriceOverride>('price')),
          ]);
        case 'rate_limit':
          return limiter.load();
        case 'model_policy':
          return policies.load();
        case 'team_capture':
          return capture.load();
        case 'mcp_credential':
          return mcp.credentials.load();
        case 'mcp_server':
          return mcp.reloadServers();
        default:
          // Admin sessions are read from the store on each request: nothing cached to reload.
          return;
      }
    },
  });
  const interceptionEvents = new InterceptionEvents(bus);
  recorder.onFinished((rec) => {
    governance.settle(rec);
    anomalies.observe(rec).catch((err: unknown) => app.log.error({ err }, 'anomaly rules failed'));
    // tool.call for each call, then interception.ended (shared/protocol.ts).
    interceptionEvents.ended(rec);
  });

  let draining = false;
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async () => {
    if (draining) throw new BridgeError('shutting_down');
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new BridgeError('not_found', `No route ${req.method} ${req.url.split('?')[0]}.`);
    const provider = providerForPath(req.url);
    reply.code(e.status).send(provider ? provider.errorBody(e.status, e.code, e.message) : e.toBody());
  });
  app.setErrorHandler((err, req, reply) => {
    const e = fromFastifyError(err);
    if (e.code === 'internal_error') req.log.error({ err }, 'request failed');
    reply.code(e.status).headers(e.headers).send(e.toBody());
  });

  // One JSON line per request: metered model requests get theirs from the recorder (with usage),
  // every other request gets this one.
  app.decorateRequest('interceptionId', null);
  app.addHook('onResponse', async (req, reply) => {
    if (req.interceptionId) return;
    req.log.info(
      {
        method: req.method,
        route: req.routeOptions.url ?? null,
        statusCode: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 100) / 100,
        userId: req.principal?.user.id ?? null,
      },
      'request',
    );
  });

  app.get('/readyz', { config: { access: 'public' } }, async (_req, reply) => {
    const storeHealth = await store.health().catch((err: unknown) => ({
      ok: false,
      detail: (err as Error).message,
    }));
    const upstreamStates = Object.fromEntries(
      Object.entries(config.upstreams).map(([id, u]) => [id, { configured: u.apiKey !== undefined }]),
    );
    const ready = storeHealth.ok && Object.values(upstreamStates).some((u) => u.configured);
    return reply.code(ready ? 200 : 503).send({
      status: ready ? 'ready' : 'not_ready',
      store: { kind: store.kind, ...storeHealth },
      upstreams: upstreamStates,
      breakers: breakers.snapshot(),
    });
  });

  app.get('/healthz', { config: { access: 'public' } }, async () => ({
    status: 'ok',
    version: VERSION,
    store: store.kind,
    upstreams: Object.fromEntries(
      Object.entries(config.upstreams).map(([id, u]) => [
        id,
        { baseUrl: u.baseUrl, configured: u.apiKey !== undefined },
      ]),
    ),
    breakers: breakers.snapshot(),
    audit: recorder.auditState(),
  }));

  // Prometheus scrapes with AIBRIDGE_METRICS_TOKEN; an admin's bridge key works too.
  app.get('/metrics', { config: { access: 'admin' } }, async (req, reply) => {
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const byToken =
      config.metricsToken !== undefined && token !== undefined && sameSecret(token, config.metricsToken);
    if (!byToken) {
      if (token === undefined || !looksLikeKey(token)) {
        throw new BridgeError('unauthorized', 'Metrics need AIBRIDGE_METRICS_TOKEN or an admin key.');
      }
      const principal = await auth.authenticate(req.headers, req.ip);
      if (principal.user.role !== 'admin') throw new BridgeError('forbidden', 'An admin key is required.');
    }
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  // Central MCP tools (docs/mcp.md): servers are connected in the background, never holding up the start.
  const mcp = new McpHub({ settings: config.mcp, store, log: app.log, bus, env: process.env });
  await mcp.start();
  const injector = new McpInjector(mcp, { maxRounds: config.mcp.maxRounds, metrics });

  // The admin page (docs/admin.md): a key exchanged for a session cookie, accepted on /api routes.
  const sessions = new Sessions(store, auth, undefined, config.adminSessionHours * 3_600_000);
  const publicUrl = config.mcp.publicUrl;
  await app.register(adminAssetRoutes(findAdminAssets()));
  await app.register(async (api) => {
    api.addHook('onRequest', apiAccessHook(new RequestAuth(auth, sessions, publicUrl)));
    await api.register(adminRoutes({ sessions, identity, store, publicUrl }));
    await api.register(mcpRoutes(mcp));
    await api.register(identityRoutes(identity, store));
    await api.register(auditRoutes(identity, store, capture));
    await api.register(spendRoutes({ identity, store, prices, budgets, limiter, policies, alerts }));
    // GET /api/v1/events: the bus over WebSocket (closed with 1001 on shutdown).
    const live = new LiveEvents(
      { bus, auth, identity, store, log: app.log, browser: browserSessions(sessions, publicUrl) },
      opts.liveEvents,
    );
    await api.register(liveEventsRoutes(live));
  });

  const openExchanges = new Set<{ shutdown(): void }>();
  const endOpenExchanges = (): number => {
    const n = openExchanges.size;
    for (const x of [...openExchanges]) x.shutdown();
    return n;
  };
  const upstreams: Record<string, UpstreamConfig> = config.upstreams;
  for (const adapter of PROVIDERS) {
    const upstream = upstreams[adapter.id];
    if (!upstream) throw new Error(`no upstream configured for provider ${adapter.id}`);
    const deps = {
      upstream,
      idleTimeoutMs: config.timeouts.idleMs,
      bodyLimit: config.bodyLimit,
      auth,
      recorder,
      breakers,
      dispatcher,
      governance,
      open: openExchanges,
      capture,
      telemetry: new ExchangeTelemetry(metrics, tracing),
      events: interceptionEvents,
      injector,
    };
    await app.register(providerRoutes(adapter, deps), { prefix: adapter.prefix });
  }

  // Retention runs beside traffic: the embedded store drops whole old segments, the database deletes rows.
  let retentionTimer: NodeJS.Timeout | undefined;
  if (config.auditRetentionDays > 0) {
    const prune = (): void => {
      const before = new Date(Date.now() - config.auditRetentionDays * 86_400_000).toISOString();
      store
        .pruneInterceptions(before)
        .then((n) => n > 0 && app.log.info({ records: n, before }, 'retention: pruned old interceptions'))
        .catch((err: unknown) => app.log.error({ err }, 'retention: prune failed'));
    };
    prune();
    retentionTimer = setInterval(prune, 3_600_000);
    retentionTimer.unref();
  }

  let metricsServer: FastifyInstance | undefined;
  const listenMetrics = async (host: string, port: number): Promise<string> => {
    metricsServer = Fastify({ logger: false });
    metricsServer.get('/metrics', async (_req, reply) =>
      reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
    );
    const address = await metricsServer.listen({ host, port });
    return `${address}/metrics`;
  };

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      draining = true;
      stopRelay();
      if (retentionTimer) clearInterval(retentionTimer);
      await app.close();
      await mcp.close();
      await recorder.drain();
      await budgets.settled();
      webhook?.close();
      await metricsServer?.close();
      await tracing
        .shutdown()
        .catch((err: unknown) => app.log.warn({ err }, 'tracing: flushing spans failed'));
      await store.close();
      await dispatcher.close();
    })();
    return closing;
  };
  return {
    app,
    store,
    identity,
    recorder,
    bus,
    metrics,
    routes,
    mcp,
    endOpenExchanges,
    listenMetrics,
    close,
  };
}
