import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { DestinationStream } from 'pino';
import type { Config } from '../config';
import { trimmedName } from '../core/team-name';
import { withoutPathKeys } from '../core/url-secrets';
import { BridgeError, fromFastifyError } from '../errors';
import { adaptersOf, providerForPath } from '../providers/registry';
import { addressKey } from './address-share';
import { baseUrlHint } from './base-url-hint';
import { type BodyAccount, BodyBudget, countedBody, keylessAccount } from './body-budget';
import { ConnectionGuard } from './connection-guard';
import { continueIfAsked, holdContinue } from './expect-continue';
import { strictDateTime } from './instant';
import { logError } from './log-errors';
import { toOriginForm } from './origin-form';
import { logRequestLine } from './request-line';
import { schemaErrorMessage } from './schema-errors';
import type { TrustedProxies } from './trusted-proxies';

/**
 * The largest body the bridge's own routes parse (users, keys, budgets, prices, policy: a few KB).
 * Provider routes take AIBRIDGE_BODY_LIMIT, set where they are mounted; a JSON body costs many
 * times its size once parsed, so the API does not take 32 MiB from anyone who can reach it.
 */
export const API_BODY_LIMIT = 1024 * 1024;

/**
 * Paths an identity provider builds by appending to a base URL an admin typed: SCIM's
 * `<base>/Users`. A base URL entered with a trailing slash (`https://bridge/scim/v2/`) becomes
 * `/scim/v2//Users`; the router would answer 404 and the provider's connection test fail with
 * nothing saying why.
 */
const BASE_URL_PATH = /^\/scim\/v2(?:\/|$)/i;

/** `url` with empty path segments (doubled and trailing slashes) dropped under a base-URL prefix. */
export function tidyBaseUrlPath(url: string): string {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (!BASE_URL_PATH.test(path)) return url;
  const tidy = path.replace(/\/{2,}/g, '/').replace(/(.)\/$/, '$1');
  return tidy === path ? url : tidy + (q === -1 ? '' : url.slice(q));
}

/**
 * A request sent on a connection before the answer to the one ahead of it (HTTP/1.1 pipelining):
 * node starts every such request at once and queues their answers, and a queued answer has no
 * socket, so it never hears the client leave. A member could start thousands of upstream calls on
 * one connection, past every per-connection limit, and none would be cancelled when they hung up.
 * No HTTP client an agent uses pipelines; the request is refused (its body drained), its answer
 * waits its turn, and the connection closes after it (docs/security.md#connections).
 */
function refusePipelined(
  req: IncomingMessage,
  res: ServerResponse,
  e: BridgeError,
  body: () => unknown,
): void {
  // Its body is read and dropped: left unread, it would fill node's buffer and stop the socket
  // being read, and the request ahead would no longer hear its client leave.
  req.resume();
  // One refusal per connection: the connection closes after it, and queued answers past node's
  // high-water mark would make it stop reading the socket (and so miss the client leaving). Later
  // requests get none; their answers are dropped with the connection.
  if (refused.has(req.socket)) return;
  refused.add(req.socket);
  const text = JSON.stringify(body());
  res.shouldKeepAlive = false;
  res.writeHead(e.status, {
    ...e.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    connection: 'close',
  });
  res.end(text);
}

/** Connections that have their pipelining refusal queued already. */
const refused = new WeakSet<object>();

const PIPELINING =
  'HTTP pipelining is not supported: send the next request after the answer to the one before it.';

/**
 * A handler offered every request before fastify routes it: it takes a request (and answers it
 * whole) or leaves it to fastify. The provider lane (server/proxy/provider-lane.ts) is one.
 */
export interface FrontDoor {
  take(req: IncomingMessage, res: ServerResponse): boolean;
}

export interface BridgeHttp {
  app: FastifyInstance;
  /** The next request id (`req-1`, `req-2`…), one sequence for fastify's requests and the front door's. */
  nextRequestId(): string;
  /** Puts a front door before fastify's request listener (one; a later call replaces it). */
  front(door: FrontDoor): void;
  /**
   * Request-body bytes held over every request of this replica (AIBRIDGE_BODY_BYTES_IN_FLIGHT):
   * every route's bodies count here; the provider lane, which fastify does not see, opens its own.
   */
  bodyBudget: BodyBudget;
}

/**
 * The fastify instance with the bridge's server-wide behaviour: logger with credentials redacted,
 * 503 while draining, not-found and errors in each route family's shape, one log line per request.
 */
export function createFastify(
  config: Config,
  logStream: DestinationStream | undefined,
  draining: () => boolean,
  trusted: TrustedProxies,
): BridgeHttp {
  // Connection caps, request deadlines, the client address behind a proxy (docs/security.md).
  const adapters = adaptersOf(config.upstreams);
  const shapeFor = (url: string) => providerForPath(adapters, url);
  /** An error's body in the shape of the route family `url` is under (a provider's, or the bridge's). */
  const bodyFor = (url: string, e: BridgeError): unknown => {
    const provider = shapeFor(url);
    return provider ? provider.errorBody(e.status, e.code, e.message, e.headers) : e.toBody();
  };
  const guard = new ConnectionGuard(config.limits, trusted, shapeFor);
  let door: FrontDoor | undefined;
  let lastId = 0;
  // Fastify's own sequence, kept to a small integer (2^31 − 1) as fastify keeps it.
  const nextRequestId = (): string => {
    lastId = (lastId + 1) & 0x7fffffff;
    return `req-${lastId.toString(36)}`;
  };
  const app = Fastify({
    http: guard.httpOptions(),
    genReqId: nextRequestId,
    clientErrorHandler: guard.clientError,
    trustProxy: trusted.fastifyOption(),
    logger: {
      level: config.logLevel,
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers["x-api-key"]',
          'req.headers["api-key"]',
          'req.headers["x-goog-api-key"]',
          'req.headers["x-aibridge-key"]',
          'req.headers.cookie',
          'headers.authorization',
        ],
        censor: '[redacted]',
      },
      // Errors only (rare, off the hot path): a URL's credentials in an error's text are masked.
      serializers: { err: logError },
      ...(logStream ? { stream: logStream } : {}),
    },
    // One line per interception comes from the recorder; per-request access lines would double it.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: Math.min(config.bodyLimit, API_BODY_LIMIT),
    // Our own hook answers 503 while draining, in each route's error shape.
    return503OnClosing: false,
    requestIdHeader: false,
    rewriteUrl: (req) => tidyBaseUrlPath(req.url ?? '/'),
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true },
      onCreate: strictDateTime,
    },
    schemaErrorFormatter: (errors, dataVar) => new Error(schemaErrorMessage(errors, dataVar)),
    // Requests the router cannot even parse (bad percent-encoding) still get our error shape.
    frameworkErrors: (err, req, reply) => {
      const e = new BridgeError('invalid_request', `The request URL is malformed: ${err.message}`, {
        cause: err,
      });
      void (reply as FastifyReply)
        .code(e.status)
        .headers(e.headers)
        .type('application/json')
        .send(bodyFor(req.url, e));
    },
  });
  const notFound = (req: FastifyRequest, reply: FastifyReply): void => {
    const hint = baseUrlHint(adapters, req.method, req.url);
    // A 400, not a 404: Claude Code and Copilot CLI read a 404 as an unknown model and never show
    // the message; a 400's they print.
    const e = hint
      ? new BridgeError('wrong_base_url', `No route ${req.method} ${req.url.split('?')[0]}. ${hint.message}`)
      : new BridgeError('not_found', `No route ${req.method} ${req.url.split('?')[0]}.`);
    if (hint)
      req.log.warn(
        { path: withoutPathKeys(req.url.split('?')[0]!) },
        'a client was given the wrong base URL',
      );
    // Outside every provider's prefix, the shape of the API the client meant to call.
    const body =
      hint && !shapeFor(req.url)
        ? hint.adapter.errorBody(e.status, e.code, e.message, e.headers)
        : bodyFor(req.url, e);
    void reply.code(e.status).headers(e.headers).send(body);
  };
  // The front door goes ahead of fastify's request listener (node's `createServer(handler)` made it
  // one), on fastify's own server: its options and close stay fastify's. `localhost`'s other
  // addresses hand their connections to this server too (listen.ts), not to servers of fastify's.
  const routed = app.server.listeners('request')[0] as RequestListener | undefined;
  if (!routed) throw new Error("fastify's server has no request listener");
  app.server.removeListener('request', routed);
  app.server.prependListener('request', (req, res) => {
    toOriginForm(req);
    // A request read after an answer that closed the connection (a refusal sent at once, with
    // `Connection: close`, before node parsed the bytes behind it): node still hands it over, on a
    // socket that is ending. Nothing of it runs: it was neither answered nor recorded before, it
    // could reach the provider with the organisation's key and be charged to a key it names, and
    // no answer can reach its client.
    if (req.socket.writableEnded) {
      req.resume();
      return;
    }
    if (res.socket === null) {
      const e = new BridgeError('invalid_request', PIPELINING);
      refusePipelined(req, res, e, () => bodyFor(req.url ?? '/', e));
    } else if (!door?.take(req, res)) routed(req, res);
  });
  guard.attach(app.server);
  holdContinue(app.server);
  // Before the server waits for its connections: one that never began a request has nothing to finish.
  app.addHook('preClose', async () => guard.endSilent());
  const bodyBudget = new BodyBudget(config.limits.bodyBytesInFlight);
  if (bodyBudget.limit > 0)
    // On every route (provider, MCP gateway, API): after onRequest, so a body is counted against
    // the user its key names, before a byte of it is read.
    app.addHook('preParsing', (req, reply, payload, done) => {
      // fastify reads no body for these: a pipe here would read one nobody drains.
      if (req.method === 'GET' || req.method === 'HEAD') {
        done(null, payload);
        return;
      }
      // Keyless requests (sign-in, device login, OAuth) are counted by client address (its /64 for
      // IPv6), so one client holding bodies open cannot refuse everyone else's sign-in.
      const who = req.principal?.user.id ?? keylessAccount(addressKey(req.ip));
      let account: BodyAccount | null;
      try {
        account = bodyBudget.open(req.raw, reply.raw, req.routeOptions.bodyLimit ?? config.bodyLimit, who);
      } catch (err) {
        done(err as Error);
        return;
      }
      done(null, account ? countedBody(payload, account) : payload);
    });
  // After onRequest (where a route's key is judged) and the body budget's room, before a byte of
  // the body is read.
  app.addHook('preParsing', (req, reply, payload, done) => {
    // A declared length over the limit is refused next (413) without its body.
    if (!(Number(req.headers['content-length']) > (req.routeOptions.bodyLimit ?? config.bodyLimit)))
      continueIfAsked(req.raw, reply.raw);
    done(null, payload);
  });
  // A DELETE sent with `content-type: application/json` and no body (many HTTP helpers always send
  // the header) is a DELETE without a body, not malformed JSON. Otherwise fastify's own parser,
  // with its prototype-poisoning checks.
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body === '' && req.method === 'DELETE') done(null, undefined);
    else json(req, body as string, done);
  });
  // No route of the bridge's own takes text: a text body was parsed as a string and refused as
  // "body must be object", where any other type it does not take is 415 unsupported_media_type.
  // (Provider, SCIM, MCP and form routes set their own parsers.)
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('principal', null);
  app.decorateRequest('interceptionId', null);
  // Hooks on every request take fastify's callback form: an async hook costs a promise each time.
  app.addHook('onRequest', (req, reply, done) => {
    if (draining()) return done(new BridgeError('shutting_down'));
    // A route that does not exist reads no body (fastify would parse it for the 404 handler, up to
    // 1 MiB, before any key is checked): answered at once, the connection closed with it unread.
    if (req.is404 && hasBody(req.raw)) {
      reply.header('connection', 'close');
      notFound(req, reply);
      return;
    }
    done();
  });
  // A team or subject written with a space at an end is the one without it: `"platform "` in a
  // budget, alias or filter must match the team users are in (their teams are stored trimmed,
  // identity-service.ts), not a team of its own nobody is in.
  app.addHook('preValidation', (req, _reply, done) => {
    const blank = trimNames(req.body) ?? trimNames(req.query) ?? trimNames(req.params);
    if (blank !== null && req.url.startsWith('/api/'))
      return done(
        new BridgeError(
          'invalid_request',
          `A ${blank === 'team' ? 'team name' : 'budget subject'} cannot be blank (spaces alone)${blank === 'team' ? ': leave it out, or send null to remove a team' : ''}.`,
        ),
      );
    done(req.url.startsWith('/api/') ? reversedWindow(req.query) : undefined);
  });
  // After the schema: a number sent as a string ("1e999", "Infinity") is coerced to Infinity, which
  // passes `minimum` (and ajv's integer check), works in memory, and is stored as JSON's null: a
  // budget limit of null then failed every request of everyone it applied to after a restart.
  app.addHook('preHandler', (req, _reply, done) => {
    const where = req.url.startsWith('/api/') ? unboundedNumber(req.body, 'body') : null;
    done(
      where === null
        ? undefined
        : new BridgeError('invalid_request', `${where} must be a finite number (it is too large to store).`),
    );
  });
  app.setNotFoundHandler(notFound);
  app.setErrorHandler((err, req, reply) => {
    const e = fromFastifyError(err);
    if (e.code === 'internal_error') req.log.error({ err }, 'request failed');
    reply.code(e.status).headers(e.headers).send(e.toBody());
  });
  // One JSON line per request: metered model requests get theirs from the recorder (with usage),
  // every other request gets this one.
  app.addHook('onResponse', (req, reply, done) => {
    if (!req.interceptionId)
      logRequestLine(req.log, {
        method: req.method,
        route: req.routeOptions.url ?? null,
        url: req.url,
        statusCode: reply.statusCode,
        elapsedMs: reply.elapsedTime,
        userId: req.principal?.user.id ?? null,
      });
    done();
  });
  return {
    app,
    nextRequestId,
    front(d) {
      door = d;
    },
    bodyBudget,
  };
}

/**
 * A query's `since` and `until` swapped (or equal) bound an empty window: every report, search and
 * export would answer nothing, an empty file or $0, as if nothing had happened. Refused instead, on
 * every route that takes them; a bound that is not an instant is left to the route's schema.
 */
function reversedWindow(query: unknown): BridgeError | undefined {
  if (query === null || typeof query !== 'object') return undefined;
  const { since, until } = query as Record<string, unknown>;
  if (typeof since !== 'string' || typeof until !== 'string') return undefined;
  const from = Date.parse(since);
  const to = Date.parse(until);
  if (Number.isNaN(from) || Number.isNaN(to) || from < to) return undefined;
  return new BridgeError('invalid_request', `since (${since}) must be before until (${until}): swap them?`);
}

/** Where in `value` a number is not finite (`body/limitUsd`), or null; at most 16 levels deep. */
function unboundedNumber(value: unknown, at: string, depth = 0): string | null {
  if (typeof value === 'number') return Number.isFinite(value) ? null : at;
  if (value === null || typeof value !== 'object' || depth >= 16) return null;
  // Parsed JSON only: arrays and plain objects (never a Buffer or a stream a route reads itself).
  const proto: unknown = Object.getPrototypeOf(value);
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return null;
  for (const [k, v] of Object.entries(value)) {
    const found = unboundedNumber(v, `${at}/${k}`, depth + 1);
    if (found !== null) return found;
  }
  return null;
}

/**
 * The fields that name a team (or a budget's subject: a team or a user's email), trimmed in place;
 * names the first that is spaces alone (and not empty, which the routes' own schemas judge), which
 * the API refuses as docs/api.md says, or null. Such a name is left as it was: trimmed to "", the
 * schemas' coercion would read it as null, which removes a user's team.
 */
function trimNames(part: unknown): 'team' | 'subject' | null {
  if (part === null || typeof part !== 'object' || Array.isArray(part)) return null;
  const o = part as Record<string, unknown>;
  let blank: 'team' | 'subject' | null = null;
  for (const name of ['team', 'subject'] as const) {
    const v = o[name];
    if (typeof v !== 'string') continue;
    const t = trimmedName(v);
    if (t !== null) o[name] = t;
    else if (v !== '') blank ??= name;
  }
  return blank;
}

/** Whether a request comes with a body (a length above 0, or chunked). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
