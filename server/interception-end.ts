import type { FastifyBaseLogger } from 'fastify';
import type { AnomalyWatcher } from './alerts/anomaly';
import { CacheBreakDetector } from './audit/cache-breaks';
import type { Recorder } from './audit/recorder';
import type { InterceptionEvents } from './events/interception-events';
import type { Governance } from './spend/governance';
import type { PriceBook } from './spend/prices';
import type { Store } from './store/types';

/**
 * What happens when an interception's record is built, in this order: its budget reservation and
 * rate-limit window are settled with the real cost, the anomaly rules see it, and its `tool.call`
 * and `interception.ended` events are published (shared/protocol.ts). The record's append to the
 * store runs beside this, never waited for by the response.
 */
export function fanOutFinished(
  recorder: Pick<Recorder, 'onFinished'>,
  d: {
    governance: Pick<Governance, 'settle'>;
    anomalies: Pick<AnomalyWatcher, 'observe'>;
    events: Pick<InterceptionEvents, 'ended'>;
    log: FastifyBaseLogger;
  },
): void {
  recorder.onFinished((rec) => {
    d.governance.settle(rec);
    d.anomalies.observe(rec)?.catch((err: unknown) => d.log.error({ err }, 'anomaly rules failed'));
    d.events.ended(rec);
  });
}

/**
 * Before each record is stored, compares its turn with its session's previous one and marks a
 * prompt-cache break on it (docs/governance.md), publishing `cache.break` as it is found.
 */
export function detectCacheBreaks(
  recorder: Pick<Recorder, 'annotateWith'>,
  d: {
    store: Pick<Store, 'shared' | 'listInterceptions'>;
    prices: Pick<PriceBook, 'cost'>;
    events: Pick<InterceptionEvents, 'cacheBreak'>;
  },
): void {
  const detector = new CacheBreakDetector(
    d.store,
    (provider, model, usage, at) => d.prices.cost(provider, model, usage, at),
    (rec, brk) => d.events.cacheBreak(rec, brk),
  );
  recorder.annotateWith(detector.annotate);
}
