import type { FastifyBaseLogger } from 'fastify';
import type { AnomalyWatcher } from './alerts/anomaly';
import type { Recorder } from './audit/recorder';
import type { InterceptionEvents } from './events/interception-events';
import type { Governance } from './spend/governance';

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
    d.anomalies.observe(rec).catch((err: unknown) => d.log.error({ err }, 'anomaly rules failed'));
    d.events.ended(rec);
  });
}
