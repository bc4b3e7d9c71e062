import assert from 'node:assert/strict';
import pino from 'pino';
import { EventBus } from '../../server/events/bus';
import { type HeardChanges, heardBeforeRelay, relayBetweenReplicas } from '../../server/events/replica-relay';
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

  /** A relay on `store` whose reloads are listed (in the order they ran) in the array returned. */
  function recordingRelay(store: Store, heard: HeardChanges): DocKind[] {
    const reloaded: DocKind[] = [];
    relayBetweenReplicas({
      bus: new EventBus(pino({ level: 'silent' })),
      store,
      kinds,
      heard,
      reload: async (k) => void reloaded.push(k),
      onError: () => undefined,
    });
    return reloaded;
  }

  it('reloads the kinds changed while the capabilities loaded, before the relay listened', () => {
    const { store, emit } = feed();
    const heard = heardBeforeRelay(store);
    emit({ kind: 'doc', docKind: 'budget' });
    const reloaded = recordingRelay(store, heard);
    assert.deepEqual(reloaded, ['budget']);
    // Heard once: the early listener is gone, the relay reloads each later change once.
    emit({ kind: 'doc', docKind: 'price' });
    assert.deepEqual(reloaded, ['budget', 'price']);
  });

  it('reloads every kind on a resync (notifications were missed), and all of them if one came early', async () => {
    const { store, emit } = feed();
    const heard = heardBeforeRelay(store);
    emit({ kind: 'resync', listening: true });
    const reloaded = recordingRelay(store, heard);
    assert.deepEqual(reloaded, kinds);
    await new Promise((r) => setImmediate(r));
    emit({ kind: 'resync', listening: true });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(reloaded, [...kinds, ...kinds]);
  });

  it('runs one reload of a kind at a time, and one more after it for the changes heard meanwhile', async () => {
    const { store, emit } = feed();
    let running = 0;
    let most = 0;
    const calls: (() => void)[] = [];
    relayBetweenReplicas({
      bus: new EventBus(pino({ level: 'silent' })),
      store,
      kinds,
      reload: () => {
        running++;
        most = Math.max(most, running);
        return new Promise<void>((resolve) =>
          calls.push(() => {
            running--;
            resolve();
          }),
        );
      },
      onError: () => undefined,
    });
    for (let i = 0; i < 3; i++) emit({ kind: 'doc', docKind: 'budget' });
    assert.equal(calls.length, 1, 'the first reload runs; the others wait for it');
    calls[0]!();
    await new Promise((r) => setImmediate(r));
    assert.equal(calls.length, 2, 'one more, which reads after every change heard');
    calls[1]!();
    await new Promise((r) => setImmediate(r));
    assert.equal(calls.length, 2);
    assert.equal(most, 1);
    emit({ kind: 'doc', docKind: 'budget' });
    assert.equal(calls.length, 3, 'a later change reloads again');
  });

  it("reloads after this replica's own write only when a reload of that kind was reading meanwhile", async () => {
    const { store, emit } = feed();
    const calls: (() => void)[] = [];
    const heard = heardBeforeRelay(store);
    emit({ kind: 'doc', docKind: 'price', local: true });
    relayBetweenReplicas({
      bus: new EventBus(pino({ level: 'silent' })),
      store,
      kinds,
      heard,
      reload: () => new Promise<void>((resolve) => calls.push(resolve)),
      onError: () => undefined,
    });
    assert.equal(calls.length, 0, 'its own write while loading is in what it loaded');
    emit({ kind: 'doc', docKind: 'budget', local: true });
    assert.equal(calls.length, 0, 'its own write is in its memory already');
    emit({ kind: 'doc', docKind: 'budget' });
    assert.equal(calls.length, 1);
    emit({ kind: 'doc', docKind: 'budget', local: true });
    calls[0]!();
    await new Promise((r) => setImmediate(r));
    assert.equal(calls.length, 2, 'the reload that may have read before the write reads again');
    calls[1]!();
    await new Promise((r) => setImmediate(r));
    assert.equal(calls.length, 2);
  });
});
