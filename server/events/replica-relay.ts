import type { BridgeEvent } from '../../shared/protocol';
import type { Audience } from '../core/audience';
import type { DocKind, Store } from '../store/types';
import type { EventBus } from './bus';

/** The longest one reload of a kind may hold the next (a hung database connection). */
const RELOAD_TIMEOUT_MS = 30_000;

export interface ReplicaRelayDeps {
  bus: EventBus;
  store: Store;
  /** Reloads whatever caches documents of this kind; failures are reported, never thrown. */
  reload(kind: DocKind): Promise<void>;
  /** The kinds that have a cache to reload. */
  kinds: readonly DocKind[];
  /** What was heard since the store opened, before this relay listened (heardBeforeRelay). */
  heard?: HeardChanges;
  onError(err: unknown, context: string): void;
}

/** Document changes heard while the capabilities loaded, before the relay listened. */
export interface HeardChanges {
  kinds: Set<DocKind>;
  /** A resync was asked for: every kind may have changed unheard. */
  all: boolean;
  stop(): void;
}

/**
 * Listens from the moment the store opens: the capabilities load their documents one after the
 * other (seconds on a large store), and a change another replica makes to a kind already loaded
 * would otherwise be heard by nobody, leaving this replica on the old budget or policy.
 */
export function heardBeforeRelay(store: Store): HeardChanges {
  const heard: HeardChanges = { kinds: new Set(), all: false, stop: () => undefined };
  if (!store.shared) return heard;
  heard.stop = store.watch((change) => {
    // A capability's own write while it loads is in what it loads, or it wrote it after reading.
    if (change.kind === 'doc' && !change.local) heard.kinds.add(change.docKind);
    else if (change.kind === 'resync') heard.all = true;
  });
  return heard;
}

/**
 * Makes replicas sharing a store behave as one bridge: events published here reach the other
 * replicas' buses (and so their WebSocket clients), theirs reach this bus, and a document another
 * replica changed reloads its cache here. Returns the unsubscribe. Events are relayed only while
 * the store knows of another replica (`peers`): alone, or on a store without replicas, the bus
 * keeps no listener for it (publishers skip work when nobody listens).
 */
export function relayBetweenReplicas(d: ReplicaRelayDeps): () => void {
  if (!d.store.shared) return () => undefined;
  // One reload of a kind at a time, and one more after it when a change came meanwhile: two at
  // once could finish in the wrong order, the older read last (a deleted budget back in force).
  const running = new Map<DocKind, { again: boolean }>();
  const reload = (kind: DocKind): void => {
    const now = running.get(kind);
    if (now) {
      now.again = true;
      return;
    }
    const state = { again: false };
    running.set(kind, state);
    const run = (): void => {
      // Bounded: a reload stuck on a hung connection must not hold every later one of its kind.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${RELOAD_TIMEOUT_MS} ms`)),
          RELOAD_TIMEOUT_MS,
        );
        timer.unref();
      });
      Promise.race([d.reload(kind), late])
        .catch((err: unknown) => d.onError(err, `reloading ${kind}`))
        .finally(() => {
          clearTimeout(timer);
          if (state.again) {
            state.again = false;
            run();
          } else running.delete(kind);
        });
    };
    run();
  };
  /** Events that came from another replica: published here, never sent back. */
  const remote = new WeakSet<BridgeEvent>();
  let offBus: (() => void) | undefined;
  const relay = (event: BridgeEvent, audience: Audience): void => {
    if (!remote.has(event)) d.store.broadcast({ kind: 'event', event, audience });
  };
  const offStore = d.store.watch((change) => {
    switch (change.kind) {
      case 'event':
        remote.add(change.event);
        d.bus.publish(change.event, change.audience);
        return;
      case 'doc':
        if (!change.local) reload(change.docKind);
        else {
          // This replica wrote it and keeps it in memory already; only a reload that may have
          // read before the write (another replica's change) must read once more.
          const now = running.get(change.docKind);
          if (now) now.again = true;
        }
        return;
      case 'peers':
        if (change.present) offBus ??= d.bus.subscribe(relay);
        else {
          offBus?.();
          offBus = undefined;
        }
        return;
      // Notifications were missed (the listening connection dropped, or listens again): any
      // kind may have changed meanwhile.
      case 'resync':
        for (const kind of d.kinds) reload(kind);
        return;
      // Keys and users are the authentication cache's (server/identity/auth-cache.ts), rate
      // counts the rate limiter's (server/spend/spend-plugin.ts), responses their owners'
      // (server/audit/audit-plugin.ts), gateway calls the gateway's (server/gateway/gateway-plugin.ts).
      case 'key':
      case 'user':
      case 'rate':
      case 'response':
      case 'gateway':
        return;
      default: {
        const never: never = change;
        return never;
      }
    }
  });
  if (d.heard) {
    d.heard.stop();
    for (const kind of d.heard.all ? d.kinds : d.heard.kinds) reload(kind);
  }
  return () => {
    offBus?.();
    offStore();
  };
}
