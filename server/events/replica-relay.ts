import type { BridgeEvent } from '../../shared/protocol';
import type { Audience } from '../core/audience';
import type { DocKind, Store } from '../store/types';
import type { EventBus } from './bus';

export interface ReplicaRelayDeps {
  bus: EventBus;
  store: Store;
  /** Reloads whatever caches documents of this kind; failures are reported, never thrown. */
  reload(kind: DocKind): Promise<void>;
  onError(err: unknown, context: string): void;
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
        d.reload(change.docKind).catch((err: unknown) => d.onError(err, `reloading ${change.docKind}`));
        return;
      case 'peers':
        if (change.present) offBus ??= d.bus.subscribe(relay);
        else {
          offBus?.();
          offBus = undefined;
        }
        return;
      // Keys and users are the authentication cache's (server/identity/auth-cache.ts).
      case 'key':
      case 'user':
      case 'resync':
        return;
      default: {
        const never: never = change;
        return never;
      }
    }
  });
  return () => {
    offBus?.();
    offStore();
  };
}
