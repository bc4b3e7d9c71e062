import assert from 'node:assert/strict';
import pino from 'pino';
import { EventBus } from '../../server/events/bus';
import { heardBeforeRelay, relayBetweenReplicas } from '../../server/events/replica-relay';
import type { DocKind, Store, StoreChange } from '../../server/store/types';

/** A shared store's change feed, driven by the test. */
function feed(): { store: Store; emit(change: StoreChange): void } {
  const listeners = new Set<(c: StoreChange) => void>();
  const store = {
    shared: true,
    watch(fn: (c: StoreChange) => void) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    broadcast() {},
  } as unknown as Store;
  return {
    store,
    emit: (c) => {
      for (const fn of listeners) fn(c);
    },
  };
}

describe('replica relay: document caches follow changes they could not hear', () => {
  const kinds: DocKind[] = ['budget', 'model_policy', 'price'];

  it('reloads the kinds changed while the capabilities loaded, before the relay listened', () => {
    const { store, emit } = feed();
    const heard = heardBeforeRelay(store);
    emit({ kind: 'doc', docKind: 'budget' });
    const reloaded: DocKind[] = [];
    relayBetweenReplicas({
      bus: new EventBus(pino({ level: 'silent' })),
      store,
      kinds,
      heard,
      reload: async (k) => void reloaded.push(k),
      onError: () => undefined,
    });
    assert.deepEqual(reloaded, ['budget']);
    // Heard once: the early listener is gone, the relay reloads each later change once.
    emit({ kind: 'doc', docKind: 'price' });
    assert.deepEqual(reloaded, ['budget', 'price']);
  });

  it('reloads every kind on a resync (notifications were missed), and all of them if one came early', () => {
    const { store, emit } = feed();
    const heard = heardBeforeRelay(store);
    emit({ kind: 'resync' });
    const reloaded: DocKind[] = [];
    relayBetweenReplicas({
      bus: new EventBus(pino({ level: 'silent' })),
      store,
      kinds,
      heard,
      reload: async (k) => void reloaded.push(k),
      onError: () => undefined,
    });
    assert.deepEqual(reloaded, kinds);
    emit({ kind: 'resync' });
    assert.deepEqual(reloaded, [...kinds, ...kinds]);
  });
});
