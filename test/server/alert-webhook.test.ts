import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { WebhookSender } from '../../server/alerts/webhook';
import type { Metrics } from '../../server/metrics';
import type { Alert } from '../../shared/spend';

const quiet = { warn: () => undefined } as unknown as FastifyBaseLogger;

function alert(id: string): Alert {
  return { id, kind: 'anomaly', message: `alert ${id}` } as unknown as Alert;
}

describe('the alert webhook', () => {
  const sockets = new Set<import('node:net').Socket>();
  let server: http.Server;
  let url: string;
  const received: string[] = [];
  let answer: (res: http.ServerResponse) => void;

  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        received.push((JSON.parse(body) as { alert: { id: string } }).alert.id);
        answer(res);
      });
    });
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('a receiver answering 204 or 200 with a body: each a delivery, the bridge unharmed', async () => {
    received.length = 0;
    let n = 0;
    answer = (res) => {
      if (n++ % 2 === 0) res.writeHead(204).end();
      else res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    };
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.prependListener('uncaughtException', onUncaught);
    try {
      let failures = 0;
      const metrics = { webhookFailures: { inc: () => failures++ } } as unknown as Metrics;
      const sender = new WebhookSender({ url, attempts: 1, backoffMs: 10 }, quiet, metrics);
      for (const id of ['c1', 'c2', 'c3', 'c4']) sender.send(alert(id));
      const t0 = Date.now();
      while (received.length < 4 && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 20));
      // An unheard `error` of a body dropped unread would surface here, after the deliveries.
      await new Promise((r) => setTimeout(r, 200));
      sender.close();
      assert.deepEqual(received, ['c1', 'c2', 'c3', 'c4']);
      assert.equal(failures, 0);
      assert.deepEqual(uncaught, []);
    } finally {
      process.removeListener('uncaughtException', onUncaught);
    }
  });

  it('a receiver that answers 200 and then trickles its body holds up no later alert', async () => {
    received.length = 0;
    const timers: NodeJS.Timeout[] = [];
    answer = (res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      // A byte every 200 ms, never ending: within every idle timeout, for days at 128 KiB.
      timers.push(setInterval(() => res.write('.'), 200));
    };
    let failures = 0;
    const metrics = { webhookFailures: { inc: () => failures++ } } as unknown as Metrics;
    const sender = new WebhookSender({ url, attempts: 1, backoffMs: 10 }, quiet, metrics);
    const t0 = Date.now();
    for (const id of ['a1', 'a2', 'a3']) sender.send(alert(id));
    while (received.length < 3 && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 20));
    sender.close();
    for (const t of timers) clearInterval(t);
    assert.deepEqual(received, ['a1', 'a2', 'a3'], 'each alert posted in turn, at once');
    assert.equal(failures, 0, 'a 200 is a delivery, whatever its body does');
  });

  it('an attempt whose answer never comes ends at its deadline, and the next alert goes', async () => {
    received.length = 0;
    answer = () => undefined; // never a status
    let failures = 0;
    const metrics = { webhookFailures: { inc: () => failures++ } } as unknown as Metrics;
    const sender = new WebhookSender({ url, attempts: 1, backoffMs: 10, attemptMs: 300 }, quiet, metrics);
    const t0 = Date.now();
    sender.send(alert('b1'));
    sender.send(alert('b2'));
    while (failures < 2 && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 20));
    sender.close();
    assert.deepEqual(received, ['b1', 'b2']);
    assert.equal(failures, 2);
    assert.ok(Date.now() - t0 < 2_000, `both attempts ended at their deadline (${Date.now() - t0} ms)`);
  });
});
