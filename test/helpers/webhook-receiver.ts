import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Alert } from '../../shared/spend';
import { eventually } from './eventually';

export interface Received {
  headers: http.IncomingHttpHeaders;
  body: { type: string; alert: Alert };
}

/** A real HTTP receiver on port 0 for alert webhooks; it can be told to fail the next deliveries. */
export class WebhookReceiver {
  readonly received: Received[] = [];
  failures = 0;
  private failing = 0;
  private readonly server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (this.failing > 0) {
        this.failing -= 1;
        this.failures += 1;
        res.writeHead(503).end('try later');
        return;
      }
      this.received.push({
        headers: req.headers,
        body: JSON.parse(Buffer.concat(chunks).toString()) as Received['body'],
      });
      res.writeHead(204).end();
    });
  });
  url = '';

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/aibridge`;
    return this;
  }

  failNext(n: number): void {
    this.failing = n;
  }

  /** Waits until `n` deliveries match, or fails after `timeoutMs`. */
  async waitFor(
    n: number,
    match: (r: Received) => boolean = () => true,
    timeoutMs = 5000,
  ): Promise<Received[]> {
    return eventually(
      () => {
        const got = this.received.filter(match);
        return got.length >= n ? got : undefined;
      },
      { timeoutMs, what: `${n} webhook deliveries (got ${this.received.filter(match).length})` },
    );
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
