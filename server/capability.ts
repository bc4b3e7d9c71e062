import type { FastifyBaseLogger, FastifyPluginAsync } from 'fastify';
import type { Clock } from './clock';
import type { Config } from './config';
import type { EventBus } from './events/bus';
import type { Lifecycle } from './lifecycle';
import type { Metrics } from './metrics';
import type { DocKind, Store } from './store/types';

/** What every capability is built from: the bridge's core, created before any of them. */
export interface Core {
  config: Config;
  store: Store;
  bus: EventBus;
  metrics: Metrics;
  log: FastifyBaseLogger;
  clock: Clock;
  /** Whatever a capability opens it registers here, to be released on shutdown or a failed start. */
  life: Lifecycle;
}

/**
 * One capability of the bridge (identity, spend, audit, MCP, live events, admin page): its
 * services, the `/api` routes it serves (registered behind the access hook) and the stored
 * documents it reloads when another replica changes them.
 */
export interface Capability {
  routes?: FastifyPluginAsync;
  reload?: Partial<Record<DocKind, () => Promise<void>>>;
}
