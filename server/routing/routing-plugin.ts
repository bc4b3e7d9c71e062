import type { AlertService } from '../alerts/alert-service';
import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import { adaptersOf } from '../providers/registry';
import type { PoolEvents } from './key-pool';
import { KeyPools, type Sealer } from './key-pools';
import { keyRoutes } from './key-routes';

export interface RoutingCapability extends Capability {
  pools: KeyPools;
}

/** A refusal's status with the start of what the provider said (its credit balance, say). */
function said(status: number, reason: string | undefined): string {
  return reason ? `${status}: ${reason.replace(/\s+/g, ' ').slice(0, 200)}` : String(status);
}

/** The least time between two alerts of one instance's single key refused. */
const REFUSAL_ALERT_MS = 3_600_000;

/**
 * Upstream key pools (docs/routing.md#key-pools): each instance's keys from the providers file and
 * the store, their admin API, their metrics, the alert when the upstream refuses one, and their
 * reload when another replica changes them. The proxy acquires each attempt's credential here.
 */
export async function routingCapability(
  core: Core,
  d: { alerts: Pick<AlertService, 'raise'>; sealer: Sealer | undefined },
): Promise<RoutingCapability> {
  const { config, store, metrics, clock, log } = core;
  const refusalAlerts = new Map<string, number>();
  /** The alert of a provider refusing an organisation key: a pool's, or an instance's only one. */
  const keyRefused = (status: number, message: string): void => {
    d.alerts.raise({
      kind: 'upstream',
      rule: 'upstream_key_auth_failed',
      userId: null,
      userEmail: null,
      team: null,
      observed: status,
      baseline: 0,
      unit: 'requests',
      message,
      budgetId: null,
    });
  };
  const events: PoolEvents = {
    attempt: (provider, key) => metrics.keyRequests.inc({ provider, key }),
    rateLimited: (provider, key, status, cooldownMs) => {
      metrics.keyRateLimited.inc({ provider, key, status: String(status) });
      log.info({ provider, key, status, cooldownMs }, 'provider key cooling down');
    },
    authFailed: (provider, key, status, reason) => {
      metrics.keyAuthFailures.inc({ provider, key });
      keyRefused(
        status,
        `Provider instance "${provider}" refused its key "${key}" (${said(status, reason)}); the key is out of rotation until an admin re-enables or replaces it.`,
      );
    },
    credentialRefused: (provider, status, reason) => {
      log.warn({ provider, status }, "provider refused the organisation's credential");
      // Once an hour per instance: a 401 some requests draw and others not (a restricted key's
      // missing scope) flips the state on every pair, and each flip would be an alert.
      const now = clock.now();
      const last = refusalAlerts.get(provider);
      if (last !== undefined && now - last < REFUSAL_ALERT_MS) return;
      refusalAlerts.set(provider, now);
      keyRefused(
        status,
        `Provider instance "${provider}" refused the organisation's credential (${said(status, reason)}): its requests fail with 502 upstream_auth_failed (routed ones go to their next target) until an admin replaces the key.`,
      );
    },
  };
  const pools = new KeyPools({
    instances: config.upstreams,
    adapters: adaptersOf(config.upstreams),
    store,
    clock,
    sealer: d.sealer,
    events,
    log,
  });
  await pools.load();
  metrics.keyPoolSource = () => pools.cooling();
  return {
    pools,
    routes: keyRoutes({ pools, now: datesOf(clock) }),
    reload: { provider_key: () => pools.load() },
  };
}
