import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { type RequestAuth, sessionTokenOf } from '../admin/browser-auth';
import type { Recorder } from '../audit/recorder';
import type { UpstreamConfig } from '../config';
import { BridgeError } from '../errors';
import { type Authenticator, credentialFrom } from '../identity/auth';
import { looksLikeKey } from '../identity/keys';
import type { Metrics } from '../metrics';
import type { CircuitBreakers } from '../proxy/circuit-breaker';
import type { Store } from '../store/types';
import type { CredentialProbe } from './credential-probe';

export interface OpsDeps {
  version: string;
  store: Store;
  upstreams: Readonly<Record<string, UpstreamConfig>>;
  breakers: CircuitBreakers;
  recorder: Pick<Recorder, 'auditState'>;
  metrics: Metrics;
  /** AIBRIDGE_METRICS_TOKEN: reads `/metrics` and the health details besides admins. */
  metricsToken: string | undefined;
  /** Bridge keys only (Prometheus and scripts on `/metrics`). */
  auth: Authenticator;
  /** A bridge key or the admin page's session cookie (the health details). */
  requestAuth: RequestAuth;
  /** Whether each configured instance's credential can be obtained. */
  credentials: Pick<CredentialProbe, 'reports'>;
  /** Whether an instance can serve: its own credential, or run-time key-pool keys (instanceServes). */
  serves: (instance: string, upstream: UpstreamConfig) => boolean;
}

/** Compares secrets in constant time (digests make the lengths equal). */
function sameSecret(a: string, b: string): boolean {
  const d = (s: string): Buffer => createHash('sha256').update(s).digest();
  return timingSafeEqual(d(a), d(b));
}

function bearer(req: FastifyRequest): string | undefined {
  return /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
}

/**
 * `/healthz`, `/readyz` and `/metrics`. Probes need no credentials and learn only up or down; the
 * details (store, upstreams and their URLs, breakers, the audit queue) map the deployment for an
 * attacker, so they go to an admin (key or admin-page cookie) or the metrics token only.
 */
export function opsRoutes(d: OpsDeps): FastifyPluginAsync {
  const byToken = (req: FastifyRequest): boolean => {
    const token = bearer(req);
    return d.metricsToken !== undefined && token !== undefined && sameSecret(token, d.metricsToken);
  };

  /** Whether the caller may see details; anyone else (a bad key included) gets the public answer. */
  const maySeeDetails = async (req: FastifyRequest): Promise<boolean> => {
    if (byToken(req)) return true;
    // Only what could be an admin is checked: anything else is no failed sign-in, just a probe.
    const credential = credentialFrom(req.headers);
    if (credential === undefined ? sessionTokenOf(req.headers) === undefined : !looksLikeKey(credential))
      return false;
    try {
      return (await d.requestAuth.authenticate(req)).user.role === 'admin';
    } catch {
      return false;
    }
  };

  return async (app) => {
    d.metrics.chainHeadSource = () => d.store.chainHead();

    app.get('/readyz', { config: { access: 'public' } }, async (req, reply) => {
      const storeHealth = await d.store.health().catch((err: unknown) => ({
        ok: false,
        detail: (err as Error).message,
      }));
      const credentials = await d.credentials.reports();
      const upstreamStates = Object.fromEntries(
        Object.entries(d.upstreams).map(([id, u]) => {
          const credential = credentials[id];
          return [id, { configured: d.serves(id, u), ...(credential ? { credential } : {}) }];
        }),
      );
      type State = { configured: boolean; credential?: { ok: boolean | null; refused?: true } };
      // An instance serves if it is configured and its credential is not known to fail.
      const serving = (u: State): boolean => u.configured && u.credential?.ok !== false;
      const states: State[] = Object.values(upstreamStates);
      // A credential the provider refused was obtained: the replica stays ready, so its admin API,
      // where the key is replaced, stays reachable behind a load balancer.
      const ready =
        storeHealth.ok && states.some((u) => serving(u) || (u.configured && u.credential?.refused));
      // Degraded, not unready: one instance's credential failing should not take the replica (and
      // every other instance it serves) out of rotation, and every replica would fail alike.
      const degraded = ready && states.some((u) => u.configured && !serving(u));
      const status = ready ? 'ready' : 'not_ready';
      reply.code(ready ? 200 : 503);
      if (!(await maySeeDetails(req))) return { status };
      return {
        status: degraded ? 'degraded' : status,
        store: { kind: d.store.kind, ...storeHealth },
        upstreams: upstreamStates,
        breakers: d.breakers.snapshot(),
      };
    });

    app.get('/healthz', { config: { access: 'public' } }, async (req) => {
      if (!(await maySeeDetails(req))) return { status: 'ok' };
      return {
        status: 'ok',
        version: d.version,
        store: d.store.kind,
        upstreams: Object.fromEntries(
          Object.entries(d.upstreams).map(([id, u]) => [
            id,
            { type: u.type, baseUrl: u.baseUrl, configured: d.serves(id, u) },
          ]),
        ),
        breakers: d.breakers.snapshot(),
        audit: d.recorder.auditState(),
      };
    });

    // Prometheus scrapes with AIBRIDGE_METRICS_TOKEN; an admin's bridge key works too.
    app.get('/metrics', { config: { access: 'admin' } }, async (req, reply) => {
      if (!byToken(req)) {
        const token = bearer(req);
        if (token === undefined || !looksLikeKey(token)) {
          throw new BridgeError('unauthorized', 'Metrics need AIBRIDGE_METRICS_TOKEN or an admin key.');
        }
        const principal = await d.auth.authenticate(req.headers, req.ip);
        if (principal.user.role !== 'admin') throw new BridgeError('forbidden', 'An admin key is required.');
      }
      return reply.type(d.metrics.registry.contentType).send(await d.metrics.registry.metrics());
    });
  };
}
