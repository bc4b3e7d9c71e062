import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { createParser, type EventSourceParser } from 'eventsource-parser';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import { type Dispatcher, request as undiciRequest } from 'undici';
import type { ApiName, InterceptionError, InterceptionStatus } from '../../shared/interception';
import type { InterceptionEnd, InterceptionStart, Recorder } from '../audit/recorder';
import type { UpstreamConfig } from '../config';
import { BridgeError, fromFastifyError } from '../errors';
import { type Authenticator, credentialFrom } from '../identity/auth';
import { errorFromBody, isObject } from '../providers/common';
import type { JsonObject, ProviderAdapter, ResponseFacts, StreamMeter } from '../providers/types';
import { detectClient } from './client-detect';
import { clientResponseHeaders, upstreamRequestHeaders } from './headers';
import { upstreamFailure } from './upstream';

export interface ProxyDeps {
  upstream: UpstreamConfig;
  bodyLimit: number;
  auth: Authenticator;
  recorder: Recorder;
  dispatcher: Dispatcher;
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
function writable(res: ServerResponse): Promise<void> {
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

function headerValue(v: string | string[] | undefined): string | null {
  return (Array.isArray(v) ? v[0] : v) ?? null;
}

/** One exchange with the upstream, from the moment the request is accepted to the record. */
class Exchange {
  private clientGone = false;
  private readonly abort = new AbortController();
  private httpStatus = 0;
  private upstreamRequestId: string | null = null;

  constructor(
    private readonly adapter: ProviderAdapter,
    private readonly deps: ProxyDeps,
    private readonly req: FastifyRequest,
    private readonly reply: FastifyReply,
    private readonly api: ApiName | null,
    private readonly start: InterceptionStart | undefined,
  ) {
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) {
        this.clientGone = true;
        this.abort.abort();
      }
    });
  }

  private finish(
    status: InterceptionStatus,
    response: ResponseFacts | null,
    error: InterceptionError | null,
    streamed: boolean,
  ): void {
    if (!this.start) return;
    const end: InterceptionEnd = {
      status: this.clientGone ? 'client_aborted' : status,
      httpStatus: this.httpStatus,
      streamed,
      response,
      error,
      upstreamRequestId: this.upstreamRequestId,
      endedAt: new Date(),
    };
    this.deps.recorder.finish(this.start, end);
  }

  /** Records a failure that happened before the upstream answered, and hands the error to fastify's handler. */
  failEarly(err: BridgeError): never {
    this.httpStatus = err.status;
    this.finish('error', null, { type: err.code, message: err.message }, false);
    throw err;
  }

  async run(url: string, body: Buffer | undefined): Promise<void> {
    const headers = {
      ...upstreamRequestHeaders(this.req.headers),
      ...this.adapter.authHeaders(this.deps.upstream.apiKey!),
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
        this.finish('client_aborted', null, null, false);
        return;
      }
      this.failEarly(upstreamFailure(err));
    }
    await this.relay(res);
  }

  private async relay(res: Dispatcher.ResponseData): Promise<void> {
    const { api, adapter, reply } = this;
    const out = reply.raw;
    const contentType = headerValue(res.headers['content-type']) ?? '';
    const streamed = api !== null && res.statusCode < 400 && contentType.includes('text/event-stream');
    this.httpStatus = res.statusCode;
    this.upstreamRequestId = headerValue(res.headers[adapter.requestIdHeader]);

    reply.hijack();
    const headers = clientResponseHeaders(res.headers, !streamed);
    if (this.start) headers['x-aibridge-interception-id'] = this.start.id;
    out.writeHead(res.statusCode, headers);

    let meter: StreamMeter | undefined;
    let parser: EventSourceParser | undefined;
    const decoder = new TextDecoder();
    if (streamed && api) {
      const m = adapter.createStreamMeter(api);
      meter = m;
      parser = createParser({ onEvent: (e) => m.onEvent({ event: e.event, data: e.data }, new Date()) });
    }
    const copy: Buffer[] = [];
    let copied = 0;

    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (parser) parser.feed(decoder.decode(chunk, { stream: true }));
        else if (api && copied < JSON_COPY_LIMIT) {
          copy.push(chunk);
          copied += chunk.length;
        }
        if (!out.write(chunk)) await writable(out);
        if (this.clientGone) break;
      }
    } catch (err) {
      if (this.clientGone) {
        this.finish('client_aborted', meter?.result() ?? null, null, streamed);
        return;
      }
      const failure = upstreamFailure(err);
      this.req.log.warn({ err, code: failure.code }, 'upstream failed mid-response');
      if (streamed) out.end(adapter.streamError(failure.status, failure.message));
      else out.destroy();
      this.finish(
        'error',
        meter?.result() ?? null,
        { type: failure.code, message: failure.message },
        streamed,
      );
      return;
    }
    if (this.clientGone) {
      res.body.destroy();
      this.finish('client_aborted', meter?.result() ?? null, null, streamed);
      return;
    }
    out.end();
    if (!api) return;

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
      else facts = adapter.fromJson(api, json, new Date());
    }
    this.finish(res.statusCode >= 400 || error ? 'error' : 'ok', facts, error, streamed);
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
  const principal = await deps.auth.authenticate(req.headers);
  const api = adapter.endpoint(req.method, path);
  const raw = Buffer.isBuffer(req.body) ? req.body : undefined;
  let body = raw;
  let start: InterceptionStart | undefined;
  if (api) {
    const parsed = parseJsonObject(raw);
    start = {
      id: `int_${randomUUID()}`,
      principal,
      provider: adapter.id,
      api,
      client: detectClient(req.headers),
      request: adapter.describeRequest(api, parsed, req.headers),
      startedAt: new Date(),
    };
    body = adapter.prepareBody(api, parsed, raw!);
  }
  const exchange = new Exchange(adapter, deps, req, reply, api, start);
  if (!deps.upstream.apiKey) exchange.failEarly(new BridgeError('provider_not_configured'));
  await exchange.run(deps.upstream.baseUrl + target, body);
}

/** Mounts one provider adapter under its prefix: every method, every path, errors in its shape. */
export function providerRoutes(adapter: ProviderAdapter, deps: ProxyDeps): FastifyPluginAsync {
  return async (app) => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: deps.bodyLimit }, (_req, body, done) => {
      done(null, body);
    });
    app.setErrorHandler((err, req, reply) => {
      const e = fromFastifyError(err);
      if (e.status >= 500 && e.code === 'internal_error') req.log.error({ err }, 'proxy failed');
      reply.code(e.status).type('application/json').send(adapter.errorBody(e.status, e.message));
    });
    const handler = (req: FastifyRequest, reply: FastifyReply): Promise<void> =>
      forward(adapter, deps, req, reply);
    app.route({ method: METHODS, url: '/', handler, exposeHeadRoute: false });
    app.route({ method: METHODS, url: '/*', handler, exposeHeadRoute: false });
  };
}
