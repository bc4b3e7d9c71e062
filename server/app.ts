import type { Server } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { DestinationStream } from 'pino';
import { adminCapability } from './admin/admin-plugin';
import { auditCapability } from './audit/audit-plugin';
import type { Recorder } from './audit/recorder';
import type { Capability, Core } from './capability';
import { type Clock, systemClock } from './clock';
import type { Config } from './config';
import { deviceCapability } from './device/device-plugin';
import { EventBus } from './events/bus';
import { liveCapability } from './events/live-plugin';
import { heardBeforeRelay, relayBetweenReplicas } from './events/replica-relay';
import type { LiveEventsOptions } from './events/ws-routes';
import { gatewayCapability } from './gateway/gateway-plugin';
import { apiAccessHook } from './http/access-hook';
import { createFastify } from './http/create-fastify';
import { type LocalhostLookup, listenEverywhere } from './http/listen';
import { RouteTable } from './http/route-table';
import { TrustedProxies } from './http/trusted-proxies';
import { identityCapability } from './identity/identity-plugin';
import type { IdentityService } from './identity/identity-service';
import { MemberWrites } from './identity/member-writes';
import { provisionerCapability } from './identity/provisioner-plugin';
import { detectCacheBreaks, fanOutFinished } from './interception-end';
import { Lifecycle } from './lifecycle';
import { CredentialCipher } from './mcp/cipher';
import type { McpHub } from './mcp/hub';
import { mcpCapability } from './mcp/mcp-plugin';
import { Metrics } from './metrics';
import { oauthCapability } from './oauth/oauth-plugin';
import { CredentialProbe } from './ops/credential-probe';
import { listenMetricsAlone } from './ops/metrics-listener';
import { opsRoutes } from './ops/ops-routes';
import { policyCapability } from './policy/policy-plugin';
import { adaptersOf } from './providers/registry';
import type { ProviderAdapter } from './providers/types';
import { ProviderLane } from './proxy/provider-lane';
import { proxyCapability } from './proxy/proxy-plugin';
import { aliasCapability } from './routing/aliases-plugin';
import { byokCapability } from './routing/byok-plugin';
import { type CredentialSource, instanceServes } from './routing/credentials';
import { routeTableCapability } from './routing/route-table-plugin';
import { routingCapability } from './routing/routing-plugin';
import { scimCapability } from './scim/scim-plugin';
import { engagementCapability } from './spend/engagement-plugin';
import { spendCapability } from './spend/spend-plugin';
import { oidcCapability } from './sso/oidc-plugin';
import { createStore } from './store/create-store';
import type { DocKind, Store } from './store/types';
import { ExchangeTelemetry } from './telemetry/exchange-telemetry';
import { Tracing } from './telemetry/tracing';

const VERSION = '0.1.0';

export interface BuildOptions {
  /** Where logs go (tests capture them); default stdout. */
  logStream?: DestinationStream;
  /** A store to use instead of the one the config selects. */
  store?: Store;
  /** Live events tuning (tests shorten the heartbeat). */
  liveEvents?: Partial<LiveEventsOptions>;
  /** Time for every period, window, expiry and cooldown (tests pass a fake clock instead of sleeping). */
  clock?: Clock;
  /** Where each instance's upstream credential comes from per attempt (key pools); default its single one. */
  credentials?: (adapter: ProviderAdapter) => CredentialSource;
  /** False: metered calls go through fastify's router too (tests compare the two ways in). */
  providerLane?: boolean;
  /** What `localhost` resolves to, for `listen` (tests name two loopback addresses). */
  lookupLocalhost?: LocalhostLookup;
  /** The embedded store's data dir was taken by another process: `aibridge serve` stops (exit 1). */
  onStoreLost?: (reason: string) => void;
}

/** Logged at start when nothing could serve a model request: a new admin's most likely first mistake. */
export const NO_PROVIDER_WARNING =
  'No provider instance has a key or credential, so model requests get 503 provider_not_configured and /readyz answers 503: set AIBRIDGE_ANTHROPIC_API_KEY, AIBRIDGE_OPENAI_API_KEY or AIBRIDGE_GEMINI_API_KEY (or write a providers file, AIBRIDGE_PROVIDERS_FILE), or add a key with POST /api/v1/providers/:instance/keys (which needs AIBRIDGE_MCP_CREDENTIALS_KEY set, to seal it)';

export interface Bridge {
  app: FastifyInstance;
  store: Store;
  identity: IdentityService;
  recorder: Recorder;
  bus: EventBus;
  metrics: Metrics;
  /** Every route with its access rule (tests walk it). */
  routes: RouteTable;
  /** The metered calls' way in ahead of fastify (server/proxy/provider-lane.ts). */
  lane: ProviderLane;
  /** MCP servers and connections (tests wait on `ready()`). */
  mcp: McpHub;
  /** Ends every exchange still open (streams get an error event); for when the shutdown grace is over. */
  endOpenExchanges(): number;
  /**
   * Listens for clients on `host` (every address of `localhost`, each through the same front
   * door: server/http/listen.ts); returns the URL.
   */
  listen(host: string, port: number): Promise<string>;
  /** Serves `/metrics` alone on another port (no auth: bind it where only Prometheus reaches); returns its URL. */
  listenMetrics(host: string, port: number): Promise<string>;
  /** Stops accepting, lets open streams finish, flushes every record, releases everything. */
  close(): Promise<void>;
}

/**
 * Builds the whole bridge from a validated config: the core (store, bus, metrics, clock), then one
 * capability after another, each bringing its services, `/api` routes, replica reloads and what it
 * must release. `main.ts` and the tests build the same thing. A failure halfway releases what was
 * opened (docs/architecture.md).
 */
export async function buildApp(config: Config, opts: BuildOptions = {}): Promise<Bridge> {
  let draining = false;
  const trusted = new TrustedProxies(config.limits.trustedProxies);
  const http = createFastify(config, opts.logStream, () => draining, trusted);
  const { app } = http;
  const life = new Lifecycle(app.log);
  try {
    const store = opts.store ?? (await createStore(config, app.log, opts.onStoreLost));
    life.onClose('store', () => store.close());
    await store.open().catch((err: unknown) => {
      throw new Error(`cannot open the ${store.kind} store: ${(err as Error).message}`, { cause: err });
    });
    const heard = heardBeforeRelay(store);
    const routes = new RouteTable();
    routes.attach(app);
    const tracing = await Tracing.create(config.tracing);
    life.onClose('tracing', () =>
      tracing.shutdown().catch((err: unknown) => app.log.warn({ err }, 'tracing: flushing spans failed')),
    );
    const core: Core = {
      config,
      store,
      bus: new EventBus(app.log),
      metrics: new Metrics({ perUser: config.metricsPerUser, providers: adaptersOf(config.upstreams) }),
      log: app.log,
      clock: opts.clock ?? systemClock,
      life,
    };

    const { identity, auth, ...identityApi } = await identityCapability(core);
    const spend = await spendCapability(core, identity);
    const aliases = await aliasCapability(core, spend);
    const audit = await auditCapability(core, identity, spend.prices);
    const policy = await policyCapability(core);
    // The bridge's injected tools pass the same tool-call rules as the gateway's calls.
    const mcp = await mcpCapability(core, {
      judge: (p, names, input) => policy.toolPolicy.judgeGatewayCall(p.user, names, input),
    });
    const byok = await byokCapability(core);
    const routeTable = await routeTableCapability(core, (name) => aliases.aliases.has(name));
    aliases.routedBy((name) => Object.hasOwn(routeTable.router.routes, name));
    // Aliases and routes stored through the API are checked when set; one of each from different
    // sources (a stored alias, the file's route) can still share a name: said at start.
    for (const a of aliases.aliases.list())
      if (Object.hasOwn(routeTable.router.routes, a.alias))
        core.log.error(
          { alias: a.alias, team: a.team, model: a.model },
          `alias "${a.alias}" has a route's name: requests for it go to ${a.model}, never through the route; rename one of them`,
        );
    const memberWrites = new MemberWrites(() => core.clock.now());
    const admin = adminCapability(core, auth, identity, memberWrites);
    const live = liveCapability(
      core,
      { auth, identity, browser: admin.browser, clientAddress: (req) => trusted.clientAddress(req) },
      {
        maxSocketsPerUser: config.limits.liveSocketsPerUser,
        maxSocketsPerKey: config.limits.liveSocketsPerKey,
        ...opts.liveEvents,
      },
    );
    const scim = scimCapability(core, {
      auth,
      identity,
      recheckUser: live.recheckUser,
      forgetMcpCredentials: (id) => mcp.hub.forgetUser(id),
    });
    fanOutFinished(audit.recorder, { ...spend, events: live.interceptionEvents, log: app.log });
    detectCacheBreaks(audit.recorder, { store, prices: spend.prices, events: live.interceptionEvents });
    // Provider keys added at run time are sealed with the same key as MCP secrets.
    const routing = await routingCapability(core, {
      alerts: spend.alerts,
      sealer: config.mcp.credentialsKey ? new CredentialCipher(config.mcp.credentialsKey) : undefined,
    });
    const pools = opts.credentials ? undefined : routing.pools;
    if (!adaptersOf(config.upstreams).some((a) => instanceServes(a, pools)))
      app.log.warn(NO_PROVIDER_WARNING);
    const engagement = engagementCapability(core);
    const provisioning = provisionerCapability(core, identityApi.hasher);
    const device = deviceCapability(core, identity, config.mcp.publicUrl);
    const oidc = oidcCapability(core, {
      identity,
      sessions: admin.sessions,
      groupsFromScim: () => scim.managesGroups(),
    });
    const oauth = oauthCapability(core, { identity, hasher: identityApi.hasher, writes: memberWrites });
    const capabilities: Capability[] = [
      admin,
      mcp,
      policy,
      routeTable,
      identityApi,
      audit,
      spend,
      aliases,
      engagement,
      live,
      provisioning,
      device,
      oidc,
      oauth,
      scim,
      byok,
      routing,
    ];

    // Replicas on one database (docs/storage.md): events cross between them, changed documents reload.
    const reloaders = Object.assign({}, ...capabilities.map((c) => c.reload ?? {})) as Partial<
      Record<DocKind, () => Promise<void>>
    >;
    life.onClose(
      'replica relay',
      relayBetweenReplicas({
        bus: core.bus,
        store,
        onError: (err, context) => app.log.error({ err }, `replica relay: ${context}`),
        // Admin sessions are read from the store on each request: nothing cached to reload.
        reload: async (kind) => reloaders[kind]?.(),
        kinds: Object.keys(reloaders) as DocKind[],
        heard,
      }),
    );

    const proxy = proxyCapability(core, {
      auth,
      capture: audit.capture,
      recorder: audit.recorder,
      governance: spend.governance,
      telemetry: new ExchangeTelemetry(core.metrics, tracing, (prompt) =>
        audit.recorder.redactor.text(prompt, 'prompt', []),
      ),
      events: live.interceptionEvents,
      strategyFor: mcp.strategyFor,
      models: aliases.models,
      toolPolicy: (start) => policy.toolPolicy.forRequest(start),
      byok: byok.policy,
      router: routeTable.router,
      responseOwners: audit.responseOwners,
      ...(opts.credentials
        ? { credentials: { credentialsFor: opts.credentials, hasKeys: () => false } }
        : { credentials: routing.pools }),
    });
    await app.register(
      opsRoutes({
        version: VERSION,
        store,
        upstreams: config.upstreams,
        breakers: proxy.breakers,
        recorder: audit.recorder,
        metrics: core.metrics,
        metricsToken: config.metricsToken,
        auth,
        requestAuth: admin.requestAuth,
        credentials: new CredentialProbe(adaptersOf(config.upstreams), core.clock),
        serves: (id, upstream) => instanceServes({ id, configured: upstream.configured }, pools),
      }),
    );
    await app.register(admin.assets);
    await app.register(device.page);
    await app.register(oauth.page);
    await app.register(scim.plugin);
    await app.register(
      gatewayCapability(core, {
        auth,
        hub: mcp.hub,
        limiter: spend.limiter,
        judge: (p, names, input) => policy.toolPolicy.judgeGatewayCall(p.user, names, input),
        accessTokens: oauth.accessTokens,
        capture: audit.capture,
        writes: memberWrites,
        // Notification streams are re-checked on the live sockets' beat, as those are.
        ...(opts.liveEvents?.heartbeatMs ? { recheckMs: opts.liveEvents.heartbeatMs } : {}),
      }).plugin,
    );
    await app.register(async (api) => {
      api.addHook(
        'onRequest',
        apiAccessHook(admin.requestAuth, (req) => provisioning.provisioners.claim(req)),
      );
      api.addHook('onRequest', memberWrites.hook());
      for (const c of capabilities) if (c.routes) await api.register(c.routes);
    });
    const lane = new ProviderLane({
      log: app.log,
      draining: () => draining,
      clientAddress: (req) => trusted.clientAddress(req),
      nextRequestId: http.nextRequestId,
    });
    await proxy.register(app, http.bodyBudget, lane);
    if (opts.providerLane !== false) http.front(lane);

    let metricsServer: FastifyInstance | undefined;
    life.onClose('metrics listener', () => metricsServer?.close());
    // Closed first: stop accepting and let open streams finish before anything they use is released.
    // `localhost`'s other addresses with it, and waited for too: their connections are counted by
    // their own listener, not the HTTP server (whose close ends the idle ones, so both at once).
    // A kept-alive connection whose answer ends after the close began is idle only from then on:
    // node closed the idle ones once, at the start, so it is asked again until all are gone.
    const extraListeners: Server[] = [];
    life.onClose('HTTP server', async () => {
      const idle = setInterval(() => app.server.closeIdleConnections(), 100);
      try {
        await Promise.all([
          app.close(),
          ...extraListeners.map((l) => new Promise<void>((resolve) => l.close(() => resolve()))),
        ]);
      } finally {
        clearInterval(idle);
      }
    });

    let closing: Promise<void> | undefined;
    return {
      app,
      store,
      identity,
      recorder: audit.recorder,
      bus: core.bus,
      metrics: core.metrics,
      routes,
      lane,
      mcp: mcp.hub,
      endOpenExchanges: () => proxy.endOpenExchanges(),
      async listen(host, port) {
        const { url, extra } = await listenEverywhere(app, host, port, opts.lookupLocalhost);
        extraListeners.push(...extra);
        return url;
      },
      async listenMetrics(host, port) {
        const alone = await listenMetricsAlone(core.metrics, host, port);
        metricsServer = alone.server;
        return alone.url;
      },
      close() {
        closing ??= (async () => {
          draining = true;
          await life.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    await life.close();
    throw err;
  }
}
