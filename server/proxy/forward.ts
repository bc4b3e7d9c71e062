import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { createParser, type EventSourceMessage, type EventSourceParser } from 'eventsource-parser';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import { type Dispatcher, request as undiciRequest } from 'undici';
import type { CaptureLevel, InterceptionError, InterceptionStatus } from '../../shared/interception';
import type { InterceptionStart, Recorder } from '../audit/recorder';
import type { UpstreamConfig } from '../config';
import { BridgeError, fromFastifyError, isBridgeError } from '../errors';
import { type Authenticator, credentialFrom } from '../identity/auth';
import { errorFromBody, isObject } from '../providers/common';
import type {
  JsonObject,
  PreparedRequest,
  ProviderAdapter,
  ResponseFacts,
  StreamMeter,
  WireApi,
} from '../providers/types';
import type { ExchangeObserver, ExchangeTelemetry } from '../telemetry/exchange-telemetry';
import { type CircuitBreakers, isProviderFailure } from './circuit-breaker';
import { detectClient } from './client-detect';
import { checkedRequestFacts } from './client-strings';
import { clientResponseHeaders, upstreamRequestHeaders } from './headers';
import { idleWatchdog, upstreamFailure } from './upstream';

export interface ProxyDeps {
  upstream: UpstreamConfig;
  /** Longest silence between two response chunks before the exchange fails as a timeout. */
  idleTimeoutMs: number;
  bodyLimit: number;
  auth: Authenticator;
  recorder: Recorder;
  breakers: CircuitBreakers;
  dispatcher: Dispatcher;
  /** Refuses what policy, rate limits or budgets forbid, before the provider is contacted. */
  governance: { admit(start: InterceptionStart, bodyBytes: number): Promise<void> };
  telemetry: ExchangeTelemetry;
  /** The capture level for a caller's team. */
  capture: { levelFor(team: string | null): CaptureLevel };
  /** Exchanges in progress, so shutdown can end the ones still open after the grace period. */
  open: Set<{ shutdown(): void }>;
  /** Live events: `interception.started` once admitted, throttled `interception.progress` as a stream passes. */
  events?: {
    started(start: InterceptionStart): void;
    progress(start: InterceptionStart): (meter: StreamMeter) => void;
  };
  /** Tools the bridge runs itself (server/mcp): an exchange in rounds when the user has any. */
  injector?: ToolInjector;
}

/**
 * Offers a metered request tools the bridge runs for the user and drives the rounds that follow
 * (server/mcp/injector.ts). Undefined: the request has none and is relayed as it is.
 */
export interface ToolInjector {
  exchange(
    adapter: ProviderAdapter,
    deps: ProxyDeps,
    req: FastifyRequest,
    reply: FastifyReply,
    metered: Metered,
  ): Promise<Exchange | undefined>;
}

function shutdownError(): BridgeError {
  return new BridgeError(
    'shutting_down',
    'The bridge is shutting down; this response was ended before it finished.',
  );
}

const METHODS: HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
/** Largest non-streamed model response the bridge keeps a copy of to read usage from. */
const JSON_COPY_LIMIT = 32 * 1024 * 1024;

/** Path and query after the provider's prefix, exactly as the client encoded them. */
function relativeTarget(rawUrl: string, prefix: string): { path: string; target: string } {
  let rest = rawUrl.slice(prefix.length);
  if (!rest.startsWith('/')) rest = `/${rest}`;
  const q = rest.indexOf('?');
  return { path: q === -1 ? rest : rest.slice(0, q), target: rest };
}

/** `..` or `.` segments, however encoded, could walk out of the provider's prefix upstream. */
function hasDotSegment(path: string): boolean {
  return path.split('/').some((seg) => {
    let s = seg;
    try {
      s = decodeURIComponent(seg);
    } catch {
      return true;
    }
    return s === '.' || s === '..' || s.includes('/') || s.includes('\\') || s.includes('\0');
  });
}

function parseJsonObject(raw: Buffer | undefined): JsonObject {
  if (!raw || raw.length === 0)
    throw new BridgeError('invalid_json', 'The request body is empty; a JSON object is required.');
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new BridgeError('invalid_json', undefined, { cause: err });
  }
  if (!isObject(body)) throw new BridgeError('invalid_json', 'The request body must be a JSON object.');
  return body;
}

/** Resolves when the client can take more bytes, or has gone away. */
export function writable(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

export function headerValue(v: string | string[] | undefined): string | null {
  return (Array.isArray(v) ? v[0] : v) ?? null;
}

/** An SSE event as text again, for streams the bridge relays event by event. */
export function serializeEvent(ev: EventSourceMessage, data: string): string {
  let out = '';
  if (ev.event) out += `event: ${ev.event}\n`;
  if (ev.id !== undefined) out += `id: ${ev.id}\n`;
  for (const line of data.split('\n')) out += `data: ${line}\n`;
  return `${out}\n`;
}

export interface Metered {
  api: WireApi;
  prepared: PreparedRequest;
  start: InterceptionStart;
  probe: boolean;
  /** The client's request body, parsed. */
  body: JsonObject;
}

/** One exchange with the upstream, from the moment the request is accepted to the record. */
export class Exchange {
  protected clientGone = false;
  protected shuttingDown = false;
  protected readonly abort = new AbortController();
  private httpStatus = 0;
  private upstreamRequestId: string | null = null;
  protected readonly observer: ExchangeObserver | undefined;

  constructor(
    protected readonly adapter: ProviderAdapter,
    protected readonly deps: ProxyDeps,
    protected readonly req: FastifyRequest,
    protected readonly reply: FastifyReply,
    protected readonly metered: Metered | undefined,
  ) {
    this.observer = metered ? deps.telemetry.begin(metered.start, req.headers) : undefined;
    deps.open.add(this);
    reply.raw.on('close', () => {
      deps.open.delete(this);
      if (!reply.raw.writableFinished) {
        this.clientGone = true;
        this.abort.abort();
      }
    });
  }

  /**
   * Ends the interception: tells the breaker how the provider did (`healthy` undefined when the
   * exchange says nothing about it) and hands the record over.
   */
  private finish(
    status: InterceptionStatus,
    response: ResponseFacts | null,
    error: InterceptionError | null,
    streamed: boolean,
    healthy: boolean | undefined,
  ): void {
    const m = this.metered;
    if (!m) return;
    this.observer?.end({
      status: this.clientGone ? 'client_aborted' : status,
      httpStatus: this.httpStatus,
      response,
      error,
    });
    this.deps.breakers.record(
      this.adapter.id,
      m.start.request.model,
      this.clientGone ? undefined : healthy,
      m.probe,
    );
    this.deps.recorder.finish(m.start, {
      status: this.clientGone ? 'client_aborted' : status,
      httpStatus: this.httpStatus,
      streamed,
      response,
      error,
      upstreamRequestId: this.upstreamRequestId,
      endedAt: new Date(),
    });
  }

  /** Records a failure that happened before the upstream answered, and hands the error to fastify's handler. */
  failEarly(err: BridgeError, healthy?: boolean): never {
    this.httpStatus = err.status;
    this.finish('error', null, { type: err.code, message: err.message }, false, healthy);
    throw err;
  }

  /** Ends the exchange for shutdown: the upstream request is aborted, a stream ends with an error event. */
  shutdown(): void {
    this.shuttingDown = true;
    this.abort.abort();
  }

  async run(url: string, body: Buffer | undefined): Promise<void> {
    const headers = {
      ...upstreamRequestHeaders(this.req.headers),
      ...this.adapter.authHeaders(this.deps.upstream.apiKey!),
      ...this.observer?.upstreamStart(this.req.method, url),
    };
    let res: Dispatcher.ResponseData;
    try {
      res = await undiciRequest(url, {
        method: this.req.method as Dispatcher.HttpMethod,
        headers,
        body: body && body.length > 0 ? body : null,
        dispatcher: this.deps.dispatcher,
        signal: this.abort.signal,
      });
    } catch (err) {
      if (this.clientGone) {
        this.reply.hijack();
        this.finish('client_aborted', null, null, false, undefined);
        return;
      }
      this.failEarly(
        this.shuttingDown ? shutdownError() : upstreamFailure(err),
        this.shuttingDown ? undefined : false,
      );
    }
    this.observer?.upstreamHeaders(res.statusCode);
    await this.relay(res);
  }

  protected async relay(res: Dispatcher.ResponseData): Promise<void> {
    const { adapter, reply, metered } = this;
    const out = reply.raw;
    const contentType = headerValue(res.headers['content-type']) ?? '';
    const streamed =
      metered !== undefined && res.statusCode < 400 && contentType.includes('text/event-stream');
    const rewrite = streamed && metered.prepared.rewriteStream;
    this.httpStatus = res.statusCode;
    this.upstreamRequestId = headerValue(res.headers[adapter.requestIdHeader]);

    reply.hijack();
    const headers = clientResponseHeaders(res.headers, !streamed);
    if (metered) headers['x-aibridge-interception-id'] = metered.start.id;
    out.writeHead(res.statusCode, headers);
    if (streamed) this.observer?.streamOpened();

    let meter: StreamMeter | undefined;
    let parser: EventSourceParser | undefined;
    /** In rewrite mode, what the events of the current upstream chunk become. */
    let pending = '';
    const decoder = new TextDecoder();
    if (streamed) {
      const m = metered.api.createStreamMeter(metered.prepared);
      meter = m;
      const progress = this.deps.events?.progress(metered.start);
      parser = createParser({
        onEvent: (e) => {
          const verdict = m.onEvent({ event: e.event, data: e.data, id: e.id }, new Date());
          progress?.(m);
          if (!rewrite) return;
          if (verdict.action === 'forward') pending += serializeEvent(e, e.data);
          else if (verdict.action === 'replace') pending += serializeEvent(e, verdict.data);
        },
      });
    }
    const copy: Buffer[] = [];
    let copied = 0;
    const idle = idleWatchdog(this.deps.idleTimeoutMs, (err) => res.body.destroy(err));

    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        idle.touch();
        if (parser) parser.feed(decoder.decode(chunk, { stream: true }));
        else if (metered && copied < JSON_COPY_LIMIT) {
          copy.push(chunk);
          copied += chunk.length;
        }
        let ok = true;
        if (!rewrite) ok = out.write(chunk);
        else if (pending !== '') {
          ok = out.write(pending);
          pending = '';
        }
        this.observer?.firstByte();
        if (!ok) await writable(out);
        if (this.clientGone) break;
      }
    } catch (err) {
      idle.stop();
      if (this.clientGone) {
        this.finish('client_aborted', meter?.result() ?? null, null, streamed, undefined);
        return;
      }
      const failure = this.shuttingDown ? shutdownError() : upstreamFailure(err);
      this.req.log.warn({ err, code: failure.code }, 'upstream failed mid-response');
      if (streamed) out.end(metered.api.streamError(failure.status, failure.code, failure.message));
      else out.destroy();
      this.finish(
        'error',
        meter?.result() ?? null,
        { type: failure.code, message: failure.message },
        streamed,
        false,
      );
      return;
    }
    idle.stop();
    if (this.clientGone) {
      res.body.destroy();
      this.finish('client_aborted', meter?.result() ?? null, null, streamed, undefined);
      return;
    }
    out.end();
    if (!metered) return;

    let facts: ResponseFacts | null = meter?.result() ?? null;
    let error: InterceptionError | null = facts?.error ?? null;
    if (!meter) {
      let json: unknown;
      try {
        json = JSON.parse(Buffer.concat(copy).toString('utf8'));
      } catch {
        json = undefined;
      }
      if (res.statusCode >= 400) error = errorFromBody(res.statusCode, json);
      else {
        facts = metered.api.fromJson(json, new Date());
        error = facts.error;
      }
    }
    const failed = res.statusCode >= 400 || error !== null;
    this.finish(failed ? 'error' : 'ok', facts, error, streamed, !isProviderFailure(res.statusCode));
  }
}

async function forward(
  adapter: ProviderAdapter,
  deps: ProxyDeps,
  req: FastifyRequest,
  reply: FastifyReply,
): Promise<void> {
  const { path, target } = relativeTarget(req.raw.url ?? '/', adapter.prefix);
  if (hasDotSegment(path))
    throw new BridgeError('invalid_request', 'The path must not contain dot segments or encoded separators.');
  // Agents probe the base URL with an unauthenticated HEAD before their first call: answer it here.
  if (req.method === 'HEAD' && path === '/' && !credentialFrom(req.headers)) {
    reply.code(200).send();
    return;
  }
  const principal = await deps.auth.authenticate(req.headers, req.ip);
  const api = adapter.apis.find((a) => a.method === req.method && a.path === path);
  const raw = Buffer.isBuffer(req.body) ? req.body : undefined;
  let metered: Metered | undefined;
  if (api) {
    const parsed = parseJsonObject(raw);
    const start: InterceptionStart = {
      id: `int_${randomUUID()}`,
      principal,
      provider: adapter.id,
      api: api.name,
      client: detectClient(req.headers),
      request: checkedRequestFacts(api.describeRequest(parsed, req.headers), deps.recorder.redactor),
      startedAt: new Date(),
      requestId: req.id,
      capture: deps.capture.levelFor(principal.user.team),
    };
    const prepared = api.prepare(parsed, raw!);
    if (start.capture === 'full') prepared.captureOutput = true;
    metered = { api, start, prepared, probe: false, body: parsed };
    req.interceptionId = start.id;
  }
  const exchange =
    (metered && (await deps.injector?.exchange(adapter, deps, req, reply, metered))) ||
    new Exchange(adapter, deps, req, reply, metered);
  if (!deps.upstream.apiKey) exchange.failEarly(new BridgeError('provider_not_configured'));
  if (metered) {
    if (!deps.recorder.accepting()) exchange.failEarly(new BridgeError('audit_unavailable'));
    try {
      await deps.governance.admit(metered.start, metered.prepared.bytes.length);
    } catch (err) {
      if (isBridgeError(err)) exchange.failEarly(err);
      throw err;
    }
    const admission = deps.breakers.admit(adapter.id, metered.start.request.model);
    if (admission.admitted) metered.probe = admission.probe;
    else {
      const seconds = Math.max(1, Math.ceil(admission.retryAfterMs / 1000));
      exchange.failEarly(
        new BridgeError(
          'circuit_open',
          `The provider has been failing for ${metered.start.request.model ?? 'this model'}; retry in ${seconds}s.`,
          {
            headers: { 'retry-after': String(seconds) },
          },
        ),
      );
    }
    deps.events?.started(metered.start);
  }
  await exchange.run(deps.upstream.baseUrl + target, metered ? metered.prepared.bytes : raw);
}

/** Mounts one provider under its prefix: every method, every path, errors in its shape. */
export function providerRoutes(adapter: ProviderAdapter, deps: ProxyDeps): FastifyPluginAsync {
  return async (app) => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: deps.bodyLimit }, (_req, body, done) => {
      done(null, body);
    });
    app.setErrorHandler((err, req, reply) => {
      const e = fromFastifyError(err);
      if (e.code === 'internal_error') req.log.error({ err }, 'proxy failed');
      reply
        .code(e.status)
        .headers(e.headers)
        .type('application/json')
        .send(adapter.errorBody(e.status, e.code, e.message));
    });
    const handler = (req: FastifyRequest, reply: FastifyReply): Promise<void> =>
      forward(adapter, deps, req, reply);
    // Any valid key; the handler authenticates itself so refusals come in the provider's shape.
    const config = { access: 'member' as const };
    app.route({ method: METHODS, url: '/', handler, exposeHeadRoute: false, config });
    app.route({ method: METHODS, url: '/*', handler, exposeHeadRoute: false, config });
  };
}
