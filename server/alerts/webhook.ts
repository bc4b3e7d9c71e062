import type { FastifyBaseLogger } from 'fastify';
import { request } from 'undici';
import type { Alert } from '../../shared/spend';
import type { Metrics } from '../metrics';

const QUEUE_LIMIT = 1000;
/** The longest one delivery attempt takes, from sending to the status (docs/operations.md). */
const ATTEMPT_MS = 15_000;

export interface WebhookOptions {
  url: string;
  attempts: number;
  backoffMs: number;
  /** The longest one attempt takes (default ATTEMPT_MS). */
  attemptMs?: number;
}

/**
 * Posts each alert as JSON to the admin's webhook, one at a time, retrying with exponential
 * backoff. It runs beside the proxy and never blocks it: a dead receiver only fills a bounded
 * queue, whose oldest entries are dropped with a warning.
 */
export class WebhookSender {
  private readonly queue: Alert[] = [];
  private running = false;
  private stopped = false;
  private readonly wake = new Set<() => void>();

  constructor(
    private readonly opts: WebhookOptions,
    private readonly log: FastifyBaseLogger,
    private readonly metrics: Metrics,
  ) {}

  send(alert: Alert): void {
    if (this.stopped) return;
    if (this.queue.length >= QUEUE_LIMIT) {
      const dropped = this.queue.shift();
      this.log.warn({ alertId: dropped?.id }, 'alert webhook queue full; dropped the oldest alert');
    }
    this.queue.push(alert);
    if (!this.running) void this.run();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.wake.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      t.unref();
      this.wake.add(done);
    });
  }

  private async deliver(alert: Alert): Promise<boolean> {
    const body = JSON.stringify({ type: alert.kind === 'budget' ? 'budget.alert' : 'alert', alert });
    for (let attempt = 1; attempt <= this.opts.attempts && !this.stopped; attempt++) {
      try {
        const res = await request(this.opts.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'aibridge-alerts' },
          body,
          headersTimeout: 10_000,
          bodyTimeout: 10_000,
          // The whole attempt: a receiver trickling its answer a byte at a time stays within each
          // timeout above, and held the queue (every later alert) for days.
          signal: AbortSignal.timeout(this.opts.attemptMs ?? ATTEMPT_MS),
        });
        // The status is the answer; the body is dropped unread (a 2xx's is nothing the bridge
        // needs). Destroying an unread body emits `error`: unheard, it would end the process.
        res.body.on('error', () => undefined);
        res.body.destroy();
        if (res.statusCode >= 200 && res.statusCode < 300) return true;
        // A receiver that refuses the payload will refuse it again.
        if (res.statusCode < 500 && res.statusCode !== 408 && res.statusCode !== 429) {
          this.log.warn({ alertId: alert.id, status: res.statusCode }, 'alert webhook refused the alert');
          return false;
        }
        this.log.warn(
          { alertId: alert.id, status: res.statusCode, attempt },
          'alert webhook failed; will retry',
        );
      } catch (err) {
        this.log.warn(
          { alertId: alert.id, err: (err as Error).message, attempt },
          'alert webhook unreachable; will retry',
        );
      }
      if (attempt < this.opts.attempts) await this.sleep(this.opts.backoffMs * 2 ** (attempt - 1));
    }
    return false;
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0 && !this.stopped) {
      const alert = this.queue.shift()!;
      if (!(await this.deliver(alert))) this.metrics.webhookFailures.inc();
    }
    this.running = false;
  }

  /** Stops retrying; alerts not yet delivered stay in the store and the API. */
  close(): void {
    this.stopped = true;
    for (const w of this.wake) w();
  }
}
