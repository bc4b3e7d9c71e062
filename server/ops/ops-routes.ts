import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import type { Recorder } from '../audit/recorder';
import type { Config } from '../config';
import { BridgeError } from '../errors';
import type { Authenticator } from '../identity/auth';
import { looksLikeKey } from '../identity/keys';
import type { Metrics } from '../metrics';
import type { CircuitBreakers } from '../proxy/circuit-breaker';
import type { Store } from '../store/types';

const VERSION = '0.1.0';

/** Compares secrets in constant time (digests make the lengths equal). */
function sameSecret(a: string, b: string): boolean {
  const d = (s: string): Buffer => createHash('sha256').update(s).digest();
  return timingSafeEqual(d(a), d(b));
}

export interface OpsDeps {
  config: Config;
  store: Store;
  metrics: Metrics;
  auth: Authenticator;
  breakers: CircuitBreakers;
  recorder: Pick<Recorder, 'auditState'>;
}

/** Health, readiness and Prometheus metrics (docs/operations.md). */
export function opsRoutes(d: OpsDeps): FastifyPluginAsync {
  const { config, store, metrics, auth, breakers, recorder } = d;
  return async (app) => {
    app.get('/readyz', { config: { access: 'public' } }, async (_req, reply) => {
      const storeHealth = await store.health().catch((err: unknown) => ({
        ok: false,
        detail: (err as Error).message,
      }));
      const upstreamStates = Object.fromEntries(
        Object.entries(config.upstreams).map(([id, u]) => [id, { configured: u.apiKey !== undefined }]),
      );
      const ready = storeHealth.ok && Object.values(upstreamStates).some((u) => u.configured);
      return reply.code(ready ? 200 : 503).send({
        status: ready ? 'ready' : 'not_ready',
        store: { kind: store.kind, ...storeHealth },
        upstreams: upstreamStates,
        breakers: breakers.snapshot(),
      });
    });

    app.get('/healthz', { config: { access: 'public' } }, async () => ({
      status: 'ok',
      version: VERSION,
      store: store.kind,
      upstreams: Object.fromEntries(
        Object.entries(config.upstreams).map(([id, u]) => [
          id,
          { baseUrl: u.baseUrl, configured: u.apiKey !== undefined },
        ]),
      ),
      breakers: breakers.snapshot(),
      audit: recorder.auditState(),
    }));

    // Prometheus scrapes with AIBRIDGE_METRICS_TOKEN; an admin's bridge key works too.
    app.get('/metrics', { config: { access: 'admin' } }, async (req, reply) => {
      const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
      const byToken =
        config.metricsToken !== undefined && token !== undefined && sameSecret(token, config.metricsToken);
      if (!byToken) {
        if (token === undefined || !looksLikeKey(token)) {
          throw new BridgeError('unauthorized', 'Metrics need AIBRIDGE_METRICS_TOKEN or an admin key.');
        }
        const principal = await auth.authenticate(req.headers, req.ip);
        if (principal.user.role !== 'admin') throw new BridgeError('forbidden', 'An admin key is required.');
      }
      return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    });
  };
}

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
