import type { FastifyInstance } from 'fastify';
import type { ResponseOwners } from '../audit/response-owners';
import type { Core } from '../capability';
import { datesOf } from '../clock';
import { ChurnFreeSet } from '../core/churn-free';
import { UserPlaces } from '../core/user-places';
import { BridgeError } from '../errors';
import type { BodyBudget } from '../http/body-budget';
import { type Authenticator, keyRefusal, userRefusal } from '../identity/auth';
import { adaptersOf, familyOf } from '../providers/registry';
import type { ProviderAdapter } from '../providers/types';
import type { ModelDirectory } from '../routing/aliases-plugin';
import { type CredentialSource, instanceServes } from '../routing/credentials';
import type { Router } from '../routing/routes';
import type { ExchangeTelemetry } from '../telemetry/exchange-telemetry';
import {
  auditAccepting,
  breakerClosed,
  composeAdmission,
  continuesOwnResponse,
  foundRefusal,
  type GovernanceGate,
  governed,
  rateLimited,
  upstreamConfigured,
  withinInFlight,
} from './admission';
import { CircuitBreakers } from './circuit-breaker';
import type { ExchangeDeps, OpenExchange, StrategyFor } from './exchange';
import type { ProviderLane } from './provider-lane';
import { type ProviderRouteDeps, providerRoutes } from './provider-routes';
import { createUpstreamAgent } from './upstream';

export interface ProxyCapability {
  breakers: CircuitBreakers;
  /** Ends every exchange still open (streams get an error event); for when the shutdown grace is over. */
  endOpenExchanges(): number;
  /** Mounts every provider under its prefix; its metered calls also on the lane, when given. */
  /** `bodyBudget`: the replica's one budget of request bodies (fastify's routes count in it too). */
  register(app: FastifyInstance, bodyBudget: BodyBudget, lane?: ProviderLane): Promise<void>;
}

/** The provider routes and what they share: the upstream connection pool, circuit breakers, open exchanges. */
export function proxyCapability(
  core: Core,
  d: {
    auth: Authenticator;
    capture: ProviderRouteDeps['capture'];
    recorder: ExchangeDeps['recorder'] & { accepting(): boolean };
    governance: GovernanceGate;
    telemetry: ExchangeTelemetry;
    events: ExchangeDeps['events'];
    strategyFor: StrategyFor;
    /** Model aliases and the models each caller may use (server/routing). */
    models?: ModelDirectory;
    toolPolicy?: ExchangeDeps['toolPolicy'];
    byok: ProviderRouteDeps['byok'];
    /** Each instance's credentials (key pools, server/routing); absent: the adapter's own key. */
    credentials?: {
      credentialsFor(adapter: ProviderAdapter): CredentialSource;
      hasKeys(instance: string): boolean;
    };
    /** The routing table (server/routing): a model it names is tried on its targets in order. */
    router?: Router;
    /**
     * Who created each stored response: only they may read, delete or continue it (and only admins
     * may name a stored conversation, which no bridge route creates).
     */
    responseOwners: Pick<ResponseOwners, 'check' | 'checkConversation' | 'checkItems'>;
  },
): ProxyCapability {
  const { config, metrics, clock, life } = core;
  const dispatcher = createUpstreamAgent(config.timeouts, config.egressProxy);
  life.onClose('upstream connections', () => dispatcher.close());
  const breakers = new CircuitBreakers(config.breaker, () => clock.now());
  metrics.breakerSource = () => breakers.snapshot();
  // Not a Set: one add and one delete a request churned a Set's table in the old generation.
  const open = new ChurnFreeSet<OpenExchange>();
  // A key revoked or a user deactivated, here or on another replica: their requests still running
  // end now, a stream with an error event, rather than running on for minutes (docs/security.md).
  const endWhere = (match: (x: OpenExchange) => boolean, reason: () => BridgeError): void => {
    for (const x of [...open]) if (match(x)) x.end(reason());
  };
  const unwatch = core.store.watch((change) => {
    if (change.kind !== 'key' && change.kind !== 'user') return;
    const { id } = change;
    const mine = (x: OpenExchange) => (change.kind === 'key' ? x.owner.key.id : x.owner.user.id) === id;
    if (![...open].some(mine)) return;
    const ended = (why: string) => () => new BridgeError('unauthorized', `${why}; this response was ended.`);
    if (change.kind === 'key')
      void core.store.getKey(id).then(
        (key) => {
          if (!key || keyRefusal(key, new Date(clock.now())))
            endWhere(mine, ended('The bridge key was revoked while the request ran'));
        },
        (err: unknown) => core.log.warn({ err }, 'proxy: reading a changed key failed'),
      );
    else
      void core.store.getUserById(id).then(
        (user) => {
          if (!user || userRefusal(user))
            endWhere(mine, ended('The user was deactivated while the request ran'));
        },
        (err: unknown) => core.log.warn({ err }, 'proxy: reading a changed user failed'),
      );
  });
  life.onClose('proxy: key and user changes', unwatch);
  return {
    breakers,
    endOpenExchanges() {
      const n = open.size;
      for (const x of [...open]) x.shutdown();
      return n;
    },
    async register(app, bodyBudget, lane) {
      const pools = d.credentials;
      const credentials: ExchangeDeps['credentials'] = pools
        ? (a: ProviderAdapter): CredentialSource => pools.credentialsFor(a)
        : undefined;
      // One per replica, shared by every instance: the cap is the user's, whichever provider.
      const inFlight = new UserPlaces(config.limits.requestsInFlightPerUser);
      for (const adapter of adaptersOf(config.upstreams)) {
        const exchange: ExchangeDeps = {
          idleTimeoutMs: config.timeouts.idleMs,
          dispatcher,
          recorder: d.recorder,
          breakers,
          telemetry: d.telemetry,
          open,
          now: datesOf(clock),
          events: d.events,
          failedOver: (from, to, reason) => metrics.failovers.inc({ from, to, reason }),
          ackStored: config.auditAck === 'stored',
          ...(d.toolPolicy ? { toolPolicy: d.toolPolicy } : {}),
          ...(credentials ? { credentials } : {}),
          serves: (a) => instanceServes(a, d.credentials),
          admit: composeAdmission([
            upstreamConfigured(() => instanceServes(adapter, d.credentials), keySetting(adapter)),
            auditAccepting(() => d.recorder.accepting()),
            rateLimited(d.governance),
            withinInFlight(inFlight),
            foundRefusal(),
            continuesOwnResponse(d.responseOwners, adapter.keyScopesStoredState === true),
            governed(d.governance),
            breakerClosed(breakers, adapter.id),
          ]),
        };
        const deps: ProviderRouteDeps = {
          exchange,
          bodyLimit: config.bodyLimit,
          bodyBudget,
          maxJsonDepth: config.limits.maxJsonDepth,
          maxJsonContainers: config.limits.maxJsonContainers,
          auth: d.auth,
          capture: d.capture,
          strategyFor: d.strategyFor,
          byok: d.byok,
          responseOwners: d.responseOwners,
          rateLimits: d.governance,
          inFlight,
          ...(d.models ? { models: d.models } : {}),
          ...(d.router ? { routes: d.router } : {}),
        };
        await app.register(providerRoutes(adapter, deps), { prefix: adapter.prefix });
        lane?.add(adapter, deps);
      }
    },
  };
}

/** What gives an instance its key, for the refusal when it has none. */
function keySetting(adapter: ProviderAdapter): string {
  const env = familyOf(adapter.type)?.env;
  const pool = `or add one with POST /api/v1/providers/${adapter.id}/keys (with AIBRIDGE_MCP_CREDENTIALS_KEY set)`;
  return env && adapter.id === adapter.type
    ? `set ${env.apiKey} and restart, ${pool}`
    : `give the "${adapter.id}" instance a key in AIBRIDGE_PROVIDERS_FILE, ${pool}`;
}
