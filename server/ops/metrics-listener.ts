import Fastify, { type FastifyInstance } from 'fastify';
import { BridgeError } from '../errors';
import type { Metrics } from '../metrics';

/** Serves `/metrics` alone on another port (no auth: bind it where only Prometheus reaches). */
export async function listenMetricsAlone(
  metrics: Metrics,
  host: string,
  port: number,
): Promise<{ server: FastifyInstance; url: string }> {
  // Scrapes are short: a close ends every connection, an idle or silent one included, rather than
  // wait on it (a shutdown otherwise waited for good on one connection that sent nothing).
  const server = Fastify({ logger: false, forceCloseConnections: true });
  server.get('/metrics', async (_req, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  // Probes pointed here by mistake (`/healthz`, `/readyz` are on the main port) get the bridge's
  // error shape and a pointer, not fastify's default.
  server.setNotFoundHandler((req, reply) => {
    const e = new BridgeError(
      'not_found',
      `This port serves only GET /metrics; ${req.url.split('?')[0]} is on the bridge's main port.`,
    );
    reply.code(e.status).headers(e.headers).send(e.toBody());
  });
  const address = await server.listen({ host, port });
  return { server, url: `${address}/metrics` };
}
