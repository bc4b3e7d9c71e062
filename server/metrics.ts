import { Counter, collectDefaultMetrics, Registry } from 'prom-client';

/**
 * The bridge's Prometheus series, one registry per bridge (tests build several in one process).
 * Labels never carry emails, keys or prompt text.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly unknownPrice = new Counter({
    name: 'aibridge_unknown_price_requests_total',
    help: 'Requests for a model with no known price (their cost is recorded as null, never $0).',
    labelNames: ['provider', 'model'] as const,
    registers: [this.registry],
  });
  readonly refusals = new Counter({
    name: 'aibridge_governance_refusals_total',
    help: 'Requests refused before reaching the provider, by reason (budget_exceeded, rate_limited, model_denied).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly alerts = new Counter({
    name: 'aibridge_alerts_total',
    help: 'Alerts raised, by rule.',
    labelNames: ['rule'] as const,
    registers: [this.registry],
  });
  readonly webhookFailures = new Counter({
    name: 'aibridge_alert_webhook_failures_total',
    help: 'Alert webhook deliveries that failed after every retry.',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'aibridge_' });
  }
}
