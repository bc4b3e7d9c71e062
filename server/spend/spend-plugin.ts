import type { ModelPriceOverride } from '../../shared/spend';
import { AlertService } from '../alerts/alert-service';
import { AnomalyWatcher } from '../alerts/anomaly';
import { WebhookSender } from '../alerts/webhook';
import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import { OTHER_MODELS } from '../core/rollup';
import type { IdentityService } from '../identity/identity-service';
import { Budgets } from './budgets';
import { Governance } from './governance';
import { ModelPolicies } from './model-policy';
import { loadPricesFile, PriceBook } from './prices';
import { RateLimiter } from './rate-limits';
import { spendRoutes } from './spend-routes';

export interface SpendCapability extends Capability {
  prices: PriceBook;
  budgets: Budgets;
  governance: Governance;
  /** Each team's allowed and denied models (model discovery lists only what they allow). */
  policies: ModelPolicies;
  alerts: AlertService;
  anomalies: AnomalyWatcher;
  /** Per-user request windows; the MCP gateway counts its tool calls in them too. */
  limiter: RateLimiter;
}

/**
 * Cost, budgets, rate limits, model policy and spend alerts (docs/spend.md): the governance every
 * metered request is admitted by and settled against, and the spend API.
 */
export async function spendCapability(core: Core, identity: IdentityService): Promise<SpendCapability> {
  const { config, store, bus, log, metrics, clock, life } = core;
  // Prices are data validated at start: a bad file stops the bridge before it listens.
  const filePrices = config.spend.pricesFile ? loadPricesFile(config.spend.pricesFile) : [];
  const overrides = async (): Promise<ModelPriceOverride[]> => [
    ...filePrices,
    ...(await store.listDocs<ModelPriceOverride>('price')),
  ];
  const prices = new PriceBook(
    await overrides(),
    Object.fromEntries(
      Object.values(config.upstreams).map((u) => [u.name, { priceId: u.priceId, prices: u.prices }]),
    ),
  );
  for (const b of await store.usageBuckets({})) {
    // The embedded store's sum of a user-hour's models past its cap names no model to price.
    if (b.unpricedRequests > 0 && b.model !== OTHER_MODELS)
      prices.noteUnknown(b.provider, b.model ?? '(none)', b.unpricedRequests, b.hour);
  }
  const webhook = config.alerts.webhookUrl
    ? new WebhookSender(
        {
          url: config.alerts.webhookUrl,
          attempts: config.alerts.webhookAttempts,
          backoffMs: config.alerts.webhookBackoffMs,
        },
        log,
        metrics,
      )
    : undefined;
  life.onClose('alert webhook', () => webhook?.close());
  const alerts = new AlertService(store, bus, log, metrics, webhook, datesOf(clock));
  const policies = new ModelPolicies(store);
  await policies.load();
  const limiter = new RateLimiter(store, { rpm: config.spend.defaultRpm, tpm: config.spend.defaultTpm }, () =>
    clock.now(),
  );
  await limiter.load();
  if (store.shared) {
    // Replicas count every member's windows together (docs/spend.md#rate-limits).
    const stopSharing = limiter.share((counts) => store.broadcast({ kind: 'rate', counts }));
    const unwatch = store.watch((change) => {
      if (change.kind === 'rate') limiter.heard(change.counts);
    });
    life.onClose('rate-limit sharing', () => {
      unwatch();
      stopSharing();
    });
  }
  const budgets = new Budgets(
    store,
    alerts,
    datesOf(clock),
    (err) => log.error({ err }, 'budget ledger unavailable'),
    config.auditFailure === 'open',
  );
  await budgets.load((id) => store.getUserById(id));
  life.onClose('budget settlements', () => budgets.settled());
  const governance = new Governance(
    policies,
    limiter,
    budgets,
    prices,
    metrics,
    config.spend.defaultMaxOutputTokens,
    config.spend.requestFloorUsd,
    config.spend.unpricedModels,
  );
  const anomalies = new AnomalyWatcher(store, alerts, config.alerts, () => clock.now());
  return {
    prices,
    limiter,
    budgets,
    governance,
    policies,
    alerts,
    anomalies,
    routes: spendRoutes({ identity, store, prices, budgets, limiter, policies, alerts }),
    reload: {
      budget: () => budgets.reload((id) => store.getUserById(id)),
      price: async () => prices.replaceOverrides(await overrides()),
      rate_limit: () => limiter.load(),
      model_policy: () => policies.load(),
    },
  };
}
