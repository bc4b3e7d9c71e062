import Fastify, { type FastifyInstance, LogController } from 'fastify';
import type { DestinationStream } from 'pino';
import { auditRoutes } from './audit/audit-routes';
import { Recorder } from './audit/recorder';
import type { Config, UpstreamConfig } from './config';
import { BridgeError, fromFastifyError } from './errors';
import { apiAccessHook } from './http/access-hook';
import { Authenticator } from './identity/auth';
import { identityRoutes } from './identity/identity-routes';
import { IdentityService } from './identity/identity-service';
import { KeyHasher } from './identity/keys';
import { PROVIDERS, providerForPath } from './providers/registry';
import { CircuitBreakers } from './proxy/circuit-breaker';
import { providerRoutes } from './proxy/forward';
import { createUpstreamAgent } from './proxy/upstream';
import { EmbeddedStore } from './store/embedded/embedded-store';
import type { Store } from './store/types';

export interface BuildOptions {
  /** Where logs go (tests capture them); default stdout. */
  logStream?: DestinationStream;
  /** A store to use instead of the one the config selects. */
  store?: Store;
}

export interface Bridge {
  app: FastifyInstance;
  store: Store;
  identity: IdentityService;
  recorder: Recorder;
  /** Stops accepting, lets open streams finish, flushes every record, releases everything. */
  close(): Promise<void>;
}

const VERSION = '0.1.0';

/** Builds the whole bridge from a validated config. `main.ts` and the tests build the same thing. */
export async function buildApp(config: Config, opts: BuildOptions = {}): Promise<Bridge> {
  const store = opts.store ?? new EmbeddedStore({ dataDir: config.dataDir });
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers["x-api-key"]',
          'req.headers.cookie',
          'headers.authorization',
        ],
        censor: '[redacted]',
      },
      ...(opts.logStream ? { stream: opts.logStream } : {}),
    },
    // One line per interception comes from the recorder; per-request access lines would double it.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimit,
    // Our own hook answers 503 while draining, in each route's error shape.
    return503OnClosing: false,
    requestIdHeader: false,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
  });
  await store.open().catch((err: unknown) => {
    throw new Error(`cannot open the ${store.kind} store: ${(err as Error).message}`, { cause: err });
  });

  const hasher = await KeyHasher.load(config.dataDir, process.env.AIBRIDGE_KEY_HASH_SECRET);
  const identity = new IdentityService(store, hasher);
  const auth = new Authenticator(store, hasher);
  const recorder = new Recorder(store, app.log);
  const dispatcher = createUpstreamAgent(config.timeouts);
  const breakers = new CircuitBreakers(config.breaker);

  let draining = false;
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async () => {
    if (draining) throw new BridgeError('shutting_down');
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new BridgeError('not_found', `No route ${req.method} ${req.url.split('?')[0]}.`);
    const provider = providerForPath(req.url);
    reply.code(e.status).send(provider ? provider.errorBody(e.status, e.code, e.message) : e.toBody());
  });
  app.setErrorHandler((err, req, reply) => {
    const e = fromFastifyError(err);
    if (e.code === 'internal_error') req.log.error({ err }, 'request failed');
    reply.code(e.status).headers(e.headers).send(e.toBody());
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
  }));

  await app.register(async (api) => {
    api.addHook('onRequest', apiAccessHook(auth));
    await api.register(identityRoutes(identity, store));
    await api.register(auditRoutes(identity, store));
  });

  const upstreams: Record<string, UpstreamConfig> = config.upstreams;
  for (const adapter of PROVIDERS) {
    const upstream = upstreams[adapter.id];
    if (!upstream) throw new Error(`no upstream configured for provider ${adapter.id}`);
    const deps = {
      upstream,
      idleTimeoutMs: config.timeouts.idleMs,
      bodyLimit: config.bodyLimit,
      auth,
      recorder,
      breakers,
      dispatcher,
    };
    await app.register(providerRoutes(adapter, deps), { prefix: adapter.prefix });
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      draining = true;
      await app.close();
      await recorder.drain();
      await store.close();
      await dispatcher.close();
    })();
    return closing;
  };
  return { app, store, identity, recorder, close };
}
