import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Alert } from '../../shared/spend';
import type { EventBus } from '../events/bus';
import type { Metrics } from '../metrics';
import type { AlertQuery, Store } from '../store/types';
import type { WebhookSender } from './webhook';

export type NewAlert = Omit<Alert, 'id' | 'at'>;

/** Where every alert goes: the store, the live event bus, the log and the webhook. */
export class AlertService {
  constructor(
    private readonly store: Store,
    private readonly bus: EventBus,
    private readonly log: FastifyBaseLogger,
    private readonly metrics: Metrics,
    private readonly webhook: WebhookSender | undefined,
    private readonly now: () => Date = () => new Date(),
  ) {}

  raise(a: NewAlert): Alert {
    const alert: Alert = { id: `alr_${randomUUID()}`, at: this.now().toISOString(), ...a };
    this.metrics.alerts.inc({ rule: alert.rule });
    this.log.warn(
      {
        alertId: alert.id,
        rule: alert.rule,
        userId: alert.userId,
        observed: alert.observed,
        baseline: alert.baseline,
      },
      alert.message,
    );
    this.store
      .appendAlert(alert)
      .catch((err: unknown) => this.log.error({ err, alertId: alert.id }, 'failed to store alert'));
    const audience = { userId: alert.userId, team: alert.team };
    this.bus.publish(
      alert.kind === 'budget' ? { type: 'budget.alert', alert } : { type: 'alert', alert },
      audience,
    );
    this.webhook?.send(alert);
    return alert;
  }

  list(q: AlertQuery): Promise<Alert[]> {
    return this.store.listAlerts(q);
  }
}
