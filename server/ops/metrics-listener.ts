import Fastify, { type FastifyInstance } from 'fastify';
import type { Metrics } from '../metrics';

/** Serves `/metrics` alone on another port (no auth: bind it where only Prometheus reaches). */
export async function listenMetricsAlone(
  metrics: Metrics,
  host: string,
  port: number,
): Promise<{ server: FastifyInstance; url: string }> {
  const server = Fastify({ logger: false });
  server.get('/metrics', async (_req, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  const address = await server.listen({ host, port });
  return { server, url: `${address}/metrics` };
}
