import { randomUUID } from 'node:crypto';
import { createParser } from 'eventsource-parser';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type Dispatcher, request as undiciRequest } from 'undici';
import type { InterceptionError, InterceptionStatus, ToolCallRecord } from '../../shared/interception';
import type { InterceptionStart } from '../audit/recorder';
import { BridgeError, isBridgeError } from '../errors';
import type { Metrics } from '../metrics';
import { errorFromBody } from '../providers/common';
import type {
  CallOutcome,
  InjectedCall,
  InjectedStream,
  RoundEnd,
  ToolInjection,
} from '../providers/injection';
import type {
  JsonObject,
  PreparedRequest,
  ProviderAdapter,
  ResponseFacts,
  WireApi,
} from '../providers/types';
import { isProviderFailure } from '../proxy/circuit-breaker';
import { checkedRequestFacts } from '../proxy/client-strings';
import {
  Exchange,
  headerValue,
  type Metered,
  type ProxyDeps,
  serializeEvent,
  writable,
} from '../proxy/forward';
import { clientResponseHeaders, upstreamRequestHeaders } from '../proxy/headers';
import { idleWatchdog, upstreamFailure } from '../proxy/upstream';
import type { ExchangeObserver } from '../telemetry/exchange-telemetry';
import type { ToolRun, ToolSession } from './session';

/** Largest non-streamed model response read per round. */
const JSON_LIMIT = 32 * 1024 * 1024;

export interface LoopDeps {
  /** Upstream requests one client request may take; the last is told to answer without tools. */
  maxRounds: number;
  metrics: Metrics;
}

/** One upstream request of the loop: its own interception record, trace and breaker outcome. */
interface Round {
  start: InterceptionStart;
  observer: ExchangeObserver | undefined;
  probe: boolean;
  httpStatus: number;
  upstreamRequestId: string | null;
  endedAt: Date;
}

/** What became of the offered tools the model called in a round. */
type CallsDone = { runs: Map<string, ToolRun>; nextId: string | null } | { notRun: string };

/** A round that ended: its facts for the record and how it ended for the loop. */
interface RoundResult {
  facts: ResponseFacts | null;
  end: RoundEnd;
}

/**
 * A metered exchange with tools the bridge runs itself (docs/mcp.md). Round after round it sends
 * the request upstream, relays what the client may see as it arrives (the wire API's
 * {@link ToolInjection} hides injected calls and the rounds' seams), runs the calls the model made
 * of injected tools, concurrently, and sends the conversation on with their results, until the
 * model answers, calls one of the client's tools, or the round limit makes it answer. Every round
 * is its own interception record; the client gets one response.
 */
/** Every round's stream is rewritten: injected calls and the seams between rounds are hidden. */
export function prepareRound(
  api: WireApi,
  body: JsonObject,
  captureOutput: boolean | undefined,
): PreparedRequest {
  const prepared = api.prepare(body, Buffer.from(JSON.stringify(body)));
  return { ...prepared, rewriteStream: true, ...(captureOutput ? { captureOutput: true } : {}) };
}

export class InjectedExchange extends Exchange {
  private stream: InjectedStream | undefined;
  private headSent = false;

  constructor(
    adapter: ProviderAdapter,
    deps: ProxyDeps,
    req: FastifyRequest,
    reply: FastifyReply,
    metered: Metered,
    private readonly session: ToolSession,
    private readonly injection: ToolInjection,
    /** The client's body with the injected tools added. */
    private readonly offered: JsonObject,
    private readonly loop: LoopDeps,
  ) {
    super(adapter, deps, req, reply, metered);
  }

  private get m(): Metered {
    return this.metered!;
  }

  override async run(url: string): Promise<void> {
    let body = this.offered;
    let prepared = this.m.prepared;
    let round: Round = {
      start: this.m.start,
      observer: this.observer,
      probe: this.m.probe,
      httpStatus: 0,
      upstreamRequestId: null,
      endedAt: new Date(),
    };
    const json = this.injection.createJson(this.session.isInjected);
    for (let n = 1; ; n++) {
      const last = n >= this.loop.maxRounds;
      const res = await this.send(url, prepared.bytes, round, n);
      if (!res) return;
      const type = headerValue(res.headers['content-type']) ?? '';
      const sse = res.statusCode < 400 && type.includes('text/event-stream');
      const isJson = res.statusCode < 400 && type.includes('json');
      if (n === 1 && !sse && !isJson) return this.relay(res);
      const streaming = this.stream !== undefined || (n === 1 && sse);
      if (streaming !== sse || (!sse && !isJson)) return this.roundFailed(round, res, streaming);

      let result: RoundResult | undefined;
      if (sse) result = await this.streamRound(res, round, prepared, last, n === 1);
      else result = await this.jsonRound(res, round, json, last);
      if (!result) return;
      const { facts, end } = result;
      const error = facts?.error ?? null;
      if (!end.continues) {
        const reason = last
          ? `the round limit (${this.loop.maxRounds}) was reached`
          : "the model also called the client's tools, or its response ended first";
        this.finishRound(round, error ? 'error' : 'ok', facts, error, sse, true, { notRun: reason });
        if (sse) this.reply.raw.end();
        else this.sendJson(res, Buffer.from(JSON.stringify(json.result())));
        return;
      }

      const runs = await this.runCalls(end.calls);
      const done = {
        runs: new Map(runs.map((r, i) => [end.calls[i]!.id, r])),
        nextId: null as string | null,
      };
      if (this.clientGone || this.shuttingDown) {
        this.finishRound(round, 'ok', facts, null, sse, true, done);
        if (this.shuttingDown)
          this.failOpenResponse(new BridgeError('shutting_down', 'The bridge is shutting down.'));
        return;
      }
      const outcomes: CallOutcome[] = runs.map((r, i) => ({
        id: end.calls[i]!.id,
        text: r.text,
        isError: r.isError,
      }));
      body = this.injection.followUp(body, end.turn, outcomes, n + 1 >= this.loop.maxRounds);
      prepared = this.prepare(body);
      const next = this.nextRound(body);
      const refusal = await this.admit(next, prepared);
      done.nextId = refusal ? null : next.start.id;
      this.finishRound(round, 'ok', facts, null, sse, true, done);
      if (refusal) return this.refused(next, refusal);
      this.deps.events?.started(next.start);
      round = next;
    }
  }

  private prepare(body: JsonObject): PreparedRequest {
    return prepareRound(this.m.api, body, this.m.prepared.captureOutput);
  }

  private nextRound(body: JsonObject): Round {
    const first = this.m.start;
    const start: InterceptionStart = {
      ...first,
      id: `int_${randomUUID()}`,
      request: checkedRequestFacts(
        this.m.api.describeRequest(body, this.req.headers),
        this.deps.recorder.redactor,
      ),
      startedAt: new Date(),
    };
    return {
      start,
      observer: this.deps.telemetry.begin(start, this.req.headers),
      probe: false,
      httpStatus: 0,
      upstreamRequestId: null,
      endedAt: new Date(),
    };
  }

  /** Each round passes governance and the breaker like any request; the refusal, if any. */
  private async admit(round: Round, prepared: PreparedRequest): Promise<BridgeError | undefined> {
    try {
      await this.deps.governance.admit(round.start, prepared.bytes.length);
    } catch (err) {
      if (isBridgeError(err)) return err;
      throw err;
    }
    const admission = this.deps.breakers.admit(this.adapter.id, round.start.request.model);
    if (admission.admitted) {
      round.probe = admission.probe;
      return undefined;
    }
    return new BridgeError('circuit_open', 'The provider has been failing; the tool loop was stopped.');
  }

  private refused(round: Round, err: BridgeError): void {
    round.httpStatus = err.status;
    round.endedAt = new Date();
    this.finishRound(
      round,
      'error',
      null,
      { type: err.code, message: err.message },
      this.stream !== undefined,
      undefined,
      {
        notRun: 'refused',
      },
    );
    this.failOpenResponse(err);
  }

  /** Ends the client's response with an error: an error event on a stream, else an error body. */
  private failOpenResponse(err: BridgeError): void {
    const out = this.reply.raw;
    if (this.headSent) {
      out.end(this.m.api.streamError(err.status, err.code, err.message));
      return;
    }
    this.reply.hijack();
    this.headSent = true;
    out.writeHead(err.status, {
      'content-type': 'application/json',
      'x-aibridge-interception-id': this.m.start.id,
      ...err.headers,
    });
    out.end(JSON.stringify(this.adapter.errorBody(err.status, err.code, err.message)));
  }

  /** Sends one round upstream; undefined when it failed (already answered and recorded). */
  private async send(
    url: string,
    bytes: Buffer,
    round: Round,
    n: number,
  ): Promise<Dispatcher.ResponseData | undefined> {
    const headers = {
      ...upstreamRequestHeaders(this.req.headers),
      ...this.adapter.authHeaders(this.deps.upstream.apiKey!),
      ...round.observer?.upstreamStart('POST', url),
    };
    let res: Dispatcher.ResponseData;
    try {
      res = await undiciRequest(url, {
        method: 'POST',
        headers,
        body: bytes,
        dispatcher: this.deps.dispatcher,
        signal: this.abort.signal,
      });
    } catch (err) {
      if (n === 1 && !this.clientGone) {
        this.failEarly(
          this.shuttingDown ? new BridgeError('shutting_down') : upstreamFailure(err),
          this.shuttingDown ? undefined : false,
        );
      }
      if (!this.headSent) this.reply.hijack();
      round.endedAt = new Date();
      if (this.clientGone) {
        this.finishRound(round, 'client_aborted', null, null, false, undefined, { notRun: 'client gone' });
        return undefined;
      }
      const failure = this.shuttingDown ? new BridgeError('shutting_down') : upstreamFailure(err);
      round.httpStatus = failure.status;
      this.finishRound(
        round,
        'error',
        null,
        { type: failure.code, message: failure.message },
        this.headSent,
        this.shuttingDown ? undefined : false,
        {
          notRun: 'upstream failed',
        },
      );
      this.failOpenResponse(failure);
      return undefined;
    }
    round.observer?.upstreamHeaders(res.statusCode);
    round.httpStatus = res.statusCode;
    round.upstreamRequestId = headerValue(res.headers[this.adapter.requestIdHeader]);
    return res;
  }

  /** A later round the provider refused (or answered unexpectedly): the client gets its error. */
  private async roundFailed(round: Round, res: Dispatcher.ResponseData, streaming: boolean): Promise<void> {
    const text = await res.body.text().catch(() => '');
    round.endedAt = new Date();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const error = errorFromBody(res.statusCode, json);
    const healthy = !isProviderFailure(res.statusCode);
    this.finishRound(round, 'error', null, error, streaming, healthy, { notRun: 'upstream refused' });
    if (streaming) {
      this.reply.raw.end(
        this.m.api.streamError(res.statusCode >= 400 ? res.statusCode : 502, error.type, error.message),
      );
      return;
    }
    this.sendJson(res, Buffer.from(text));
  }

  /** Writes the client's head once, from the first round's response. */
  private writeHead(res: Dispatcher.ResponseData): void {
    this.reply.hijack();
    this.headSent = true;
    const headers = clientResponseHeaders(res.headers, false);
    headers['x-aibridge-interception-id'] = this.m.start.id;
    this.reply.raw.writeHead(res.statusCode, headers);
  }

  private sendJson(res: Dispatcher.ResponseData, payload: Buffer): void {
    const headers = clientResponseHeaders(res.headers, false);
    this.reply.hijack();
    this.headSent = true;
    this.reply.raw.writeHead(res.statusCode, {
      ...headers,
      'content-length': String(payload.length),
      'x-aibridge-interception-id': this.m.start.id,
    });
    this.reply.raw.end(payload);
  }

  /** Relays one streamed round as its events arrive; undefined when it failed or the client left. */
  private async streamRound(
    res: Dispatcher.ResponseData,
    round: Round,
    prepared: PreparedRequest,
    last: boolean,
    first: boolean,
  ): Promise<RoundResult | undefined> {
    const out = this.reply.raw;
    if (first) {
      this.writeHead(res);
      this.stream = this.injection.createStream(this.m.body, this.session.isInjected);
    }
    const stream = this.stream!;
    stream.beginRound(last);
    round.observer?.streamOpened();
    const meter = this.m.api.createStreamMeter(prepared);
    const progress = this.deps.events?.progress(round.start);
    let pending = '';
    const parser = createParser({
      onEvent: (e) => {
        const ev = { event: e.event, data: e.data, id: e.id };
        meter.onEvent(ev, new Date());
        progress?.(meter);
        const verdict = stream.onEvent(ev);
        if (verdict.action === 'forward') pending += serializeEvent(e, e.data);
        else if (verdict.action === 'replace') pending += serializeEvent(e, verdict.data);
      },
    });
    const decoder = new TextDecoder();
    const idle = idleWatchdog(this.deps.idleTimeoutMs, (err) => res.body.destroy(err));
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        idle.touch();
        parser.feed(decoder.decode(chunk, { stream: true }));
        round.observer?.firstByte();
        if (pending !== '') {
          const ok = out.write(pending);
          pending = '';
          if (!ok) await writable(out);
        }
        if (this.clientGone) break;
      }
    } catch (err) {
      idle.stop();
      round.endedAt = new Date();
      if (this.clientGone) {
        this.finishRound(round, 'client_aborted', meter.result(), null, true, undefined, {
          notRun: 'client gone',
        });
        return undefined;
      }
      const failure = this.shuttingDown ? new BridgeError('shutting_down') : upstreamFailure(err);
      this.req.log.warn({ err, code: failure.code }, 'upstream failed mid-response');
      out.end(this.m.api.streamError(failure.status, failure.code, failure.message));
      this.finishRound(
        round,
        'error',
        meter.result(),
        { type: failure.code, message: failure.message },
        true,
        false,
        {
          notRun: 'upstream failed',
        },
      );
      return undefined;
    }
    idle.stop();
    round.endedAt = new Date();
    if (this.clientGone) {
      res.body.destroy();
      this.finishRound(round, 'client_aborted', meter.result(), null, true, undefined, {
        notRun: 'client gone',
      });
      return undefined;
    }
    return { facts: meter.result(), end: stream.endRound() };
  }

  /** Reads one non-streamed round whole: its JSON decides whether the loop goes on. */
  private async jsonRound(
    res: Dispatcher.ResponseData,
    round: Round,
    json: ReturnType<ToolInjection['createJson']>,
    last: boolean,
  ): Promise<RoundResult | undefined> {
    const chunks: Buffer[] = [];
    let size = 0;
    const idle = idleWatchdog(this.deps.idleTimeoutMs, (err) => res.body.destroy(err));
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        idle.touch();
        round.observer?.firstByte();
        size += chunk.length;
        if (size > JSON_LIMIT)
          throw new BridgeError('upstream_protocol_error', 'The response is too large to read.');
        chunks.push(chunk);
        if (this.clientGone) break;
      }
    } catch (err) {
      idle.stop();
      round.endedAt = new Date();
      const failure = isBridgeError(err)
        ? err
        : this.shuttingDown
          ? new BridgeError('shutting_down')
          : upstreamFailure(err);
      if (this.clientGone) {
        this.finishRound(round, 'client_aborted', null, null, false, undefined, { notRun: 'client gone' });
        return undefined;
      }
      this.finishRound(round, 'error', null, { type: failure.code, message: failure.message }, false, false, {
        notRun: 'upstream failed',
      });
      this.failOpenResponse(failure);
      return undefined;
    }
    idle.stop();
    round.endedAt = new Date();
    if (this.clientGone) {
      this.finishRound(round, 'client_aborted', null, null, false, undefined, { notRun: 'client gone' });
      return undefined;
    }
    const raw = Buffer.concat(chunks);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      // Not JSON after all: the client gets it as it came.
      this.finishRound(
        round,
        'error',
        null,
        { type: 'upstream_protocol_error', message: 'not JSON' },
        false,
        false,
        {
          notRun: 'unreadable response',
        },
      );
      this.sendJson(res, raw);
      return undefined;
    }
    const facts = this.m.api.fromJson(parsed, new Date());
    return { facts, end: json.addRound(parsed, last) };
  }

  /**
   * Runs a round's calls concurrently, as the user. Each is published live as a `tool.call` when
   * the round's record is handed over (with its input redacted, like every recorded call).
   */
  private async runCalls(calls: InjectedCall[]): Promise<ToolRun[]> {
    const runs = await Promise.all(calls.map((c) => this.session.run(c, this.abort.signal)));
    for (const r of runs)
      this.loop.metrics.injectedToolCalls.inc({
        server: r.server,
        tool: r.execution.tool,
        outcome: r.execution.outcome,
      });
    return runs;
  }

  /** The round's record: injected calls marked, with how they ran and where their result went. */
  private finishRound(
    round: Round,
    status: InterceptionStatus,
    facts: ResponseFacts | null,
    error: InterceptionError | null,
    streamed: boolean,
    healthy: boolean | undefined,
    calls: CallsDone,
  ): void {
    const mark = (tc: ToolCallRecord): ToolCallRecord => {
      const d = this.session.describe(tc.name);
      if (!d) return tc;
      const run = 'runs' in calls ? calls.runs.get(tc.id) : undefined;
      const execution = run?.execution ?? {
        tool: d.tool,
        outcome: 'not_run' as const,
        startedAt: round.endedAt.toISOString(),
        durationMs: 0,
        resultBytes: 0,
        error: 'notRun' in calls ? calls.notRun : 'not run',
      };
      const result =
        run && 'nextId' in calls && calls.nextId
          ? {
              at: new Date(Date.parse(run.execution.startedAt) + run.execution.durationMs).toISOString(),
              isError: run.isError,
              interceptionId: calls.nextId,
            }
          : tc.result;
      return { ...tc, injected: true, server: d.server, execution, ...(result ? { result } : {}) };
    };
    const response = facts ? { ...facts, toolCalls: facts.toolCalls.map(mark) } : null;
    const final = this.clientGone ? 'client_aborted' : status;
    round.observer?.end({ status: final, httpStatus: round.httpStatus, response, error });
    this.deps.breakers.record(
      this.adapter.id,
      round.start.request.model,
      this.clientGone ? undefined : healthy,
      round.probe,
    );
    this.deps.recorder.finish(round.start, {
      status: final,
      httpStatus: round.httpStatus,
      streamed,
      response,
      error,
      upstreamRequestId: round.upstreamRequestId,
      endedAt: round.endedAt,
    });
  }
}
