import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorCodes, type FastifyBaseLogger } from 'fastify';
import type { Principal } from '../core/principal';
import { fromFastifyError } from '../errors';
import type { BodyAccount } from '../http/body-budget';
import { continueIfAsked } from '../http/expect-continue';
import { logRequestLine } from '../http/request-line';
import type { ProviderAdapter } from '../providers/types';
import type { ProviderRoute } from './provider-paths';
import { routeFor } from './provider-paths';
import { type ProviderRouteDeps, relativeTarget, serveMetered, unsafeTarget } from './provider-routes';
import type { ProxyRequest } from './proxy-request';
import { dropQueryCredentials, moveQueryCredential } from './query-credential';

interface Lane {
  adapter: ProviderAdapter;
  deps: ProviderRouteDeps;
  /** `{prefix}/`: what a URL the lane may take starts with. */
  under: string;
  /** The fastify route the same request would have matched, for the request log line. */
  route: string;
}

export interface ProviderLaneDeps {
  log: FastifyBaseLogger;
  draining(): boolean;
  /** The client's address behind trusted proxies, as fastify's `req.ip` gives it. */
  clientAddress(req: IncomingMessage): string | undefined;
  nextRequestId(): string;
}

// A percent escape, backslash or NUL: fastify's router decodes and may refuse such a path, so it
// keeps them (the lane must answer exactly what fastify would).
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is one of the characters looked for
const ROUTER_DECODES = /[%\\\x00]/;

/**
 * The metered calls' own way in, ahead of fastify's router: a POST of JSON to a metered API of a
 * provider, the request that every agent turn is. Fastify's per-request machinery (request and
 * reply objects, hooks, router, content-type parsing, a child logger) is a sixth of a bare
 * proxy's CPU per request (docs/performance.md#provider-lane); this lane does what those provider
 * routes do for such a call, with the same functions: a query credential moved to its header,
 * authentication before the body is read, the body limit, errors in the provider's shape, then
 * `serveMetered`. Everything else (other methods and paths, refused and passthrough paths,
 * draining) goes to fastify.
 */
export class ProviderLane {
  private readonly lanes: Lane[] = [];
  private served = 0;

  constructor(private readonly d: ProviderLaneDeps) {}

  /** Requests the lane has taken since start-up. */
  get taken(): number {
    return this.served;
  }

  add(adapter: ProviderAdapter, deps: ProviderRouteDeps): void {
    this.lanes.push({ adapter, deps, under: `${adapter.prefix}/`, route: `${adapter.prefix}/*` });
    // The most specific prefix first, as fastify's router would match it.
    this.lanes.sort((a, b) => b.under.length - a.under.length);
  }

  take(req: IncomingMessage, res: ServerResponse): boolean {
    if (req.method !== 'POST') return false;
    const url = req.url ?? '';
    const lane = this.laneFor(url);
    if (!lane || !isJson(req.headers['content-type']) || this.d.draining()) return false;
    // Google's `?key=`, moved to its header as the provider routes' onRequest hook moves it.
    const cq = lane.adapter.credentialQuery;
    // Other families' credential-named parameters are cut (Google's routes refuse theirs by name).
    if (cq) moveQueryCredential(req, req.headers, cq.param, cq.header);
    else dropQueryCredentials(req);
    // Read again: moving the key rewrote the URL.
    const { path, query } = relativeTarget(req.url ?? '', lane.adapter.prefix);
    if (ROUTER_DECODES.test(path) || unsafeTarget(path, query)) return false;
    const route = routeFor(lane.adapter, 'POST', path);
    if (route.kind !== 'metered') return false;
    this.served++;
    // Never rejects: what fails in it is caught there, with no `.catch` promise per request.
    void this.serve(lane, req, res, route, query);
    return true;
  }

  private laneFor(url: string): Lane | undefined {
    for (const lane of this.lanes) if (url.startsWith(lane.under)) return lane;
    return undefined;
  }

  private async serve(
    lane: Lane,
    raw: IncomingMessage,
    res: ServerResponse,
    route: Extract<ProviderRoute, { kind: 'metered' }>,
    query: string,
  ): Promise<void> {
    try {
      const started = performance.now();
      const address = this.d.clientAddress(raw);
      const req = new LaneRequest(raw, this.d.nextRequestId(), address ?? '', this.d.log);
      try {
        const principal = lane.deps.auth.authenticateNow(raw.headers, address);
        req.principal = principal instanceof Promise ? await principal : principal;
      } catch (err) {
        // As the provider routes' onRequest hook: a body still on its way is not wanted.
        this.refuse(lane, req, res, err, started, !raw.complete);
        return;
      }
      let body: Buffer;
      try {
        const account =
          lane.deps.bodyBudget?.open(raw, res, lane.deps.bodyLimit, req.principal?.user.id ?? '') ?? null;
        body = await readBody(raw, res, lane.deps.bodyLimit, account);
      } catch (err) {
        // As fastify's body parser: the client may still be sending, so the connection closes.
        this.refuse(lane, req, res, err, started, true);
        return;
      }
      req.body = body;
      try {
        await serveMetered(lane.adapter, lane.deps, req, { raw: res, hijack: noop }, route, query);
      } catch (err) {
        this.refuse(lane, req, res, err, started, false);
      }
    } catch (err) {
      // Nothing above should throw; if it does, the request ends here rather than the process.
      this.d.log.error({ err }, 'provider lane failed');
      res.destroy();
    }
  }

  /**
   * An error before the exchange took the response: answered as the provider routes' error
   * handler does, unless something else already answered (the connection guard's 408) or the
   * client is gone.
   */
  private refuse(
    lane: Lane,
    req: LaneRequest,
    res: ServerResponse,
    err: unknown,
    started: number,
    close: boolean,
  ): void {
    const e = fromFastifyError(err);
    if (e.code === 'internal_error') req.log.error({ err }, 'proxy failed');
    if (!res.headersSent && !res.destroyed) {
      const body = JSON.stringify(lane.adapter.errorBody(e.status, e.code, e.message, e.headers));
      res.writeHead(e.status, {
        ...e.headers,
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        ...(close ? { connection: 'close' } : {}),
      });
      res.end(body);
    } else if (!res.writableEnded) {
      res.destroy();
      return;
    }
    // The line fastify's onResponse hook writes for an answered request that is no interception.
    if (req.interceptionId) return;
    logRequestLine(req.log, {
      method: req.method,
      route: lane.route,
      statusCode: res.statusCode,
      elapsedMs: performance.now() - started,
      userId: req.principal?.user.id ?? null,
    });
  }
}

function noop(): void {}

/** `application/json`, with parameters or not: what fastify hands the provider routes' JSON parser. */
function isJson(type: string | undefined): boolean {
  return type !== undefined && (type === 'application/json' || type.startsWith('application/json;'));
}

/** A lane request: what `serveMetered` and the exchange read, made without fastify. */
class LaneRequest implements ProxyRequest {
  body: unknown;
  principal: Principal | null = null;
  interceptionId: string | null = null;
  private child: FastifyBaseLogger | undefined;

  constructor(
    readonly raw: IncomingMessage,
    readonly id: string,
    readonly ip: string,
    private readonly parent: FastifyBaseLogger,
  ) {}

  get method(): string {
    return this.raw.method ?? 'POST';
  }

  get headers(): IncomingMessage['headers'] {
    return this.raw.headers;
  }

  /** Made when first used (a failure): fastify makes one for every request. */
  get log(): FastifyBaseLogger {
    this.child ??= this.parent.child({ reqId: this.id });
    return this.child;
  }
}

/**
 * The request body, up to the limit, as fastify's buffer parser reads it and with its errors: a
 * declared length over the limit is refused before reading, a body growing past it as soon as it
 * does, a length that does not match or a stream that fails (the client gone) is a 400.
 */
function readBody(
  req: IncomingMessage,
  res: ServerResponse,
  limit: number,
  account: BodyAccount | null,
): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
  if (req.destroyed) return Promise.reject(clientGone());
  // The key is good and the body fits: a client that waits to be asked sends it now.
  continueIfAsked(req, res);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const done = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > limit) {
        done();
        reject(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
        return;
      }
      try {
        account?.add(chunk.length);
      } catch (err) {
        done();
        reject(err);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      done();
      if (!Number.isNaN(declared) && received !== declared)
        reject(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH());
      // Copied, as fastify does: a chunk is a view of a socket read that may be far larger.
      else resolve(Buffer.concat(chunks, received));
    };
    const onError = (err: Error & { statusCode?: number }): void => {
      done();
      if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400;
      reject(err);
    };
    const onClose = (): void => {
      if (req.complete) return;
      done();
      reject(clientGone());
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

function clientGone(): Error {
  return Object.assign(new Error('The client closed the connection before the body arrived.'), {
    statusCode: 400,
  });
}
