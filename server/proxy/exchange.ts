import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { type Dispatcher, errors as undiciErrors } from 'undici';
import type { InterceptionAttempt, InterceptionError, InterceptionStatus } from '../../shared/interception';
import { totalTokens } from '../../shared/usage';
import type { Recorder } from '../audit/recorder';
import { Cancellation } from '../core/cancellation';
import type { InterceptionStart } from '../core/facts';
import { estimatedBodyBytes } from '../core/inline-media';
import type { Principal } from '../core/principal';
import { BridgeError, isBridgeError } from '../errors';
import { errorFromBody } from '../providers/common';
import type { StreamHold, ToolJudge } from '../providers/tool-hold';
import type {
  EventVerdict,
  JsonObject,
  PreparedRequest,
  ProviderAdapter,
  ResponseFacts,
  SseEvent,
  StreamMeter,
  WireApi,
} from '../providers/types';
import { decodedAnswer } from '../providers/upstream-answer';
import {
  type CredentialLease,
  type CredentialSource,
  orgCredentialRefused,
  refusesOrgCredential,
  reportAnswer,
  reportBlame,
  singleCredential,
} from '../routing/credentials';
import { BLAMED_STATUSES, TOO_LARGE } from '../routing/key-refusal';
import type { AttemptTarget } from '../routing/routes';
import type { ExchangeObserver, ExchangeTelemetry } from '../telemetry/exchange-telemetry';
import type { AdmissionTicket } from './admission';
import { type CircuitBreakers, isProviderFailure, isRequestFault } from './circuit-breaker';
import { checkedRequestFacts } from './client-strings';
import { clientResponseHeaders, upstreamRequestHeaders } from './headers';
import type { ProxyReply, ProxyRequest } from './proxy-request';
import {
  answerWatchdog,
  eachChunk,
  type IdleWatchdog,
  idleWatchdog,
  sendUpstream,
  upstreamFailure,
} from './upstream';
import { isContentEvent, type StreamSeen, unreadAnswerFacts, withUsageFloor } from './usage-floor';

/** Largest non-streamed model response the bridge keeps a copy of (or reads whole) for usage. */
export const JSON_READ_LIMIT = 32 * 1024 * 1024;

/** What the engine needs from the rest of the bridge; `app.ts` wires it once per provider. */
export interface ExchangeDeps {
  /** Longest silence between two response chunks before the round fails as a timeout. */
  idleTimeoutMs: number;
  dispatcher: Dispatcher;
  recorder: Pick<Recorder, 'finish' | 'redactor' | 'responseNamed'>;
  breakers: CircuitBreakers;
  telemetry: ExchangeTelemetry;
  /** The composed admission (server/proxy/admission.ts): throws the refusal. */
  admit(ticket: AdmissionTicket): void | Promise<void>;
  /**
   * Exchanges in progress, so shutdown can end the ones still open after the grace period, and a
   * revoked key or a deactivated user's can be ended at once.
   */
  open: { add(x: OpenExchange): unknown; delete(x: OpenExchange): unknown };
  /** The bridge's clock (server/clock.ts): records and their tool calls are stamped with its time. */
  now(): Date;
  /** Tool-call policy (server/policy): what applies to a request's caller; undefined when no rule does. */
  toolPolicy?: (start: Pick<InterceptionStart, 'principal'>) => CallPolicy | undefined;
  /** Live events: `interception.started` once admitted, throttled `interception.progress` as a stream passes. */
  events?: {
    started(start: InterceptionStart): void;
    progress(start: InterceptionStart): (meter: StreamMeter) => void;
  };
  /** Where an instance's upstream credential comes from, per attempt (a key pool); default: its single one. */
  credentials?: (adapter: ProviderAdapter) => CredentialSource;
  /**
   * Whether an instance can serve: its own credential, or keys an admin added to its pool at run
   * time (instanceServes); default: its own credential only.
   */
  serves?: (adapter: ProviderAdapter) => boolean;
  /** End an answer only once its record is stored (AIBRIDGE_AUDIT_ACK=stored). */
  ackStored?: boolean;
  /** Counts a failover from one instance to the next (the `aibridge_failovers_total` metric). */
  failedOver?: (from: string, to: string, reason: FailoverReason) => void;
}

/** Why an attempt was left for the next one (docs/routing.md). */
export type FailoverReason =
  | 'unreachable'
  | 'rate_limited'
  | 'overloaded'
  | 'server_error'
  | 'stream_error'
  | 'unauthorized'
  | 'no_credential'
  | 'circuit_open'
  | 'not_configured';

/** The tool-call rules that apply to one request. */
export interface CallPolicy {
  /** Present only when a deny rule may apply: then the client's tool calls are held and judged. */
  judge?: ToolJudge;
  /** A round's tool calls with what the rules say of each (`policy` on the call). */
  mark(facts: ResponseFacts): ResponseFacts;
}

/** A metered request as the client sent it, described and prepared for its first round. */
export interface Metered {
  api: WireApi;
  prepared: PreparedRequest;
  start: InterceptionStart;
  /** The client's request body, parsed. */
  body: JsonObject;
  /** Canonical path and the client's query, as they go upstream. */
  target: string;
  /**
   * The routing table's targets for this request, tried in order (server/routing/routes.ts);
   * absent: the request is not routed and goes to its own instance only.
   */
  targets?: readonly AttemptTarget[];
  /**
   * Where this request's upstream credential comes from when it is not the instance's: the user's
   * own (bring your own key, server/routing/byok.ts). Absent: the instance's.
   */
  credentials?: CredentialSource;
  /**
   * Rewrites what the client gets back (a model alias's name in place of the real model,
   * server/routing/aliases.ts): streams go event by event, JSON answers are read whole first.
   * Absent: the answer is relayed as it comes, byte for byte.
   */
  answerRewrite?: AnswerRewrite;
}

/** A change to every answer of an exchange, whatever its view or round. */
export interface AnswerRewrite {
  /** A whole JSON answer; undefined: unchanged. */
  json(answer: unknown): unknown;
  /** One SSE event's data as it goes to the client. */
  event(ev: SseEvent, data: string): string;
}

/** One upstream request of an exchange: its own interception record, trace and breaker outcome. */
export interface Round {
  readonly n: number;
  /** Once an attempt is chosen, its instance and model: the record is the target's that served. */
  start: InterceptionStart;
  prepared: PreparedRequest;
  readonly observer: ExchangeObserver;
  probe: boolean;
  httpStatus: number;
  upstreamRequestId: string | null;
  endedAt: Date;
  /** The round's answer reached the client as (part of) a stream. */
  streamed: boolean;
  /** The target this round's answer came from (the request's own instance unless routed). */
  target: AttemptTarget;
  /** A routed round's targets as admission left them (those the user's policy admits). */
  plan?: readonly AttemptTarget[];
  /** The pool key that carried the recorded attempt; null: the instance's only credential. */
  keyName: string | null;
  /** Attempts that failed before the recorded one (failover). */
  attempts: InterceptionAttempt[];
  /** The credential the recorded attempt went with (told the tokens it used, for a pool key's `tpm`). */
  lease?: CredentialLease;
  /** Content events of the answer's stream seen so far (usage-floor.ts). */
  contentEvents: number;
  /** Events and comments read from the answer's stream so far: none, with bytes, is an unreadable stream. */
  eventsRead: number;
  /**
   * The answer came in an encoding the bridge does not decode (decodedAnswer): what its parser
   * reads there is noise (a stray `\n:` in compressed bytes reads as a comment).
   */
  undecoded?: boolean;
  /** When the recorded attempt was sent upstream (ms since the epoch): its generation's start. */
  sentAt?: number;
  /** When its stream's first content event came (ms since the epoch): what came before was hidden. */
  firstContentAt?: number;
  /** Bytes of the answer read from the provider so far: the floor of an answer with no meter. */
  answerBytes: number;
  /**
   * The provider refused only what this round asked, in a status that usually means its trouble
   * (a 429 for one request over the whole per-minute limit): not counted against its breaker.
   */
  requestFault?: boolean;
}

/**
 * How a round's response reaches the client:
 * - `relay`: as it arrives (bytes as sent; SSE event by event when the request was prepared to
 *   rewrite its stream); the client's response ends with it.
 * - `events`: SSE events through `filter`; the client's response stays open for later rounds.
 * - `collect`: a JSON answer read whole, nothing written; the strategy composes what the client gets.
 */
export type RoundView =
  | { kind: 'relay' }
  | { kind: 'events'; filter: (ev: SseEvent) => EventVerdict }
  | { kind: 'collect' };

/** A round that was read to its end. */
export interface RoundRead {
  facts: ResponseFacts;
  /** The parsed answer, for `collect`. */
  json?: unknown;
  /** The answer's bytes as they came, for `collect`. */
  raw?: Buffer;
}

/** What a round's record says of its tool calls beyond the facts (set by a round strategy). */
export type CallMarker = (facts: ResponseFacts | null, round: Round, why: string) => ResponseFacts | null;

/**
 * Drives the rounds of one exchange through the engine's primitives. The plain strategy sends one
 * round and relays it; tool injection (server/mcp) asks for more rounds. Strategies never write to
 * the client or record anything themselves.
 */
export interface RoundStrategy {
  run(exchange: Exchange): Promise<void>;
}

/**
 * Waits until the client can take more bytes or has gone away (true), or has read nothing for `ms`
 * (false). The provider's idle watchdog is paused meanwhile: a stalled reader is the client's
 * doing, and must neither hold the provider's connection for ever nor be blamed on the provider
 * (its idle timeout would fire meanwhile and count against the model's circuit breaker, which one
 * member's unread streams could open for all).
 */
export function clientCaughtUp(res: ServerResponse, idle: IdleWatchdog, ms: number): Promise<boolean> {
  idle.pause();
  return new Promise((resolve) => {
    const timer = setTimeout(() => settle(false), ms);
    timer.unref();
    const settle = (drained: boolean): void => {
      clearTimeout(timer);
      res.off('drain', onReady);
      res.off('close', onReady);
      idle.touch();
      resolve(drained);
    };
    const onReady = (): void => settle(true);
    res.on('drain', onReady);
    res.on('close', onReady);
  });
}

/**
 * A served JSON answer that reports no usage at all (a provider or option that leaves it out) is
 * not a free one either: floored from the body and the answer's size, as an unreadable one is.
 */
function withAnswerFloor(facts: ResponseFacts, round: Round): ResponseFacts {
  if (facts.error !== null || round.answerBytes === 0 || totalTokens(facts.usage) > 0) return facts;
  return {
    ...facts,
    usage: unreadFacts(round, round.answerBytes).usage,
    usageEstimated: true,
  };
}

/**
 * Ends the client's answer. A client that has stopped reading is cut after `ms` (the idle timeout)
 * rather than held: with no deadline on a stalled reader, its socket, its answer's last bytes and
 * the request behind it (a body of up to 32 MiB, parsed) stayed until it hung up (a test held
 * 620 MB with ten such clients).
 */
export function endAnswerWithin(out: ServerResponse, ms: number, last?: string | Buffer): void {
  if (last === undefined) out.end();
  else out.end(last);
  if (out.writableFinished || out.destroyed) return;
  const timer = setTimeout(() => out.destroy(), ms);
  timer.unref();
  const clear = (): void => clearTimeout(timer);
  out.once('finish', clear);
  out.once('close', clear);
}

function headerValue(v: string | string[] | undefined): string | null {
  return (Array.isArray(v) ? v[0] : v) ?? null;
}

/** An SSE event as text again, for streams the bridge relays event by event. */
function serializeEvent(ev: EventSourceMessage, data: string): string {
  let out = '';
  if (ev.event) out += `event: ${ev.event}\n`;
  if (ev.id !== undefined) out += `id: ${ev.id}\n`;
  for (const line of data.split('\n')) out += `data: ${line}\n`;
  return `${out}\n`;
}

function isEventStream(res: Dispatcher.ResponseData): boolean {
  return (
    res.statusCode < 400 && (headerValue(res.headers['content-type']) ?? '').includes('text/event-stream')
  );
}

/** What an answer the bridge could not read is billed at: its round's body and `answerBytes` (usage-floor.ts). */
function unreadFacts(round: Round, answerBytes: number): ResponseFacts {
  return unreadAnswerFacts(round.prepared.bytes.length, answerBytes, round.start.request.maxOutputTokens);
}

/** Whether the round's answer leaves its target's breaker healthy: not a provider failure, or one only this request drew. */
function providerWasHealthy(round: Round, status: number): boolean {
  return round.requestFault === true || !isProviderFailure(status);
}

function shutdownError(): BridgeError {
  return new BridgeError(
    'shutting_down',
    'The bridge is shutting down; this response was ended before it finished.',
  );
}

/** The longest the end of an answer waits for its record to be stored (AIBRIDGE_AUDIT_ACK=stored). */
const ACK_WAIT_MS = 2_000;

/** Attempts per target at most (another key of a pool each time), so a request cannot loop. */
const ATTEMPTS_PER_TARGET = 3;
/** The most of a failed attempt's error body kept to give the client, should it be the last. */
const ERROR_BODY_LIMIT = 1024 * 1024;

/** One upstream attempt of a round, as `send` keeps it to choose the client's answer and record the rest. */
interface Tried {
  target: AttemptTarget;
  keyName: string | null;
  lease?: CredentialLease;
  httpStatus: number;
  error: InterceptionError | null;
  startedAt: Date;
  endedAt: Date;
  /** The attempt was the breaker's half-open probe. */
  probe: boolean;
  /** Why another attempt was made after it. */
  reason?: FailoverReason;
  /** The client's answer when this attempt is the last and got no response. */
  failure?: BridgeError;
  /** The failure was the key's (429/529/401, or a 403 naming the key, on a pool key): the same instance may be asked with another. */
  sameTarget?: boolean;
  /** What the attempt says of the instance, for its breaker; undefined: nothing. */
  healthy?: boolean;
  /** The response the client gets. */
  served?: Dispatcher.ResponseData;
  /** The failed response read whole, replayed should it be the last. */
  answer?: () => Dispatcher.ResponseData;
  /** The client left: recorded and ended already. */
  gone?: boolean;
  /** The pool gave a key this request already tried: not an attempt, the instance has nothing new. */
  repeat?: boolean;
  /** No other attempt may follow (the bridge is shutting down). */
  final?: boolean;
  /**
   * The provider had the whole request and did not answer in time (a headers timeout): it may have
   * generated, and billed, the answer it was too slow to start.
   */
  sentWhole?: boolean;
}

/**
 * Statuses that are the key's, not the instance's: a pool's other keys are tried on them. A 401, 403
 * or an out-of-credit answer is the key's when its body says so (key-refusal.ts `blameOf`): a
 * member's request can draw a 403 from any key (a resource the organisation's project may not
 * use), and retrying that on every key only spreads it. A 529 is the provider's (overloaded
 * whichever key asks): the next target, not the next key.
 */
const KEY_FAULTS: ReadonlySet<number> = new Set([429]);

/** Error types a stream's first event names for a rate limit (OpenAI Responses and Chat, Anthropic, Google). */
const RATE_LIMITED_IN_STREAM: ReadonlySet<string> = new Set([
  'rate_limit_exceeded',
  'rate_limit_error',
  'RESOURCE_EXHAUSTED',
]);

/** Statuses on which the next target is tried. */
function failoverReason(status: number): FailoverReason | undefined {
  if (status === 429) return 'rate_limited';
  if (status === 529) return 'overloaded';
  if (status >= 500) return 'server_error';
  return undefined;
}

/** The request body for a target: as prepared, or with `model` replaced by the target's model id. */
function bodyFor(bytes: Buffer, model: string | null): Buffer {
  if (model === null) return bytes;
  const body = JSON.parse(bytes.toString('utf8')) as JsonObject;
  return Buffer.from(JSON.stringify({ ...body, model }));
}

/** A response with its body replaced by `chunks`, its status and headers kept; destroying it destroys the original. */
function withChunks(
  res: Dispatcher.ResponseData,
  chunks: Iterable<Buffer> | AsyncIterable<Buffer>,
): Dispatcher.ResponseData {
  const body = Readable.from(chunks, { objectMode: false });
  body.on('close', () => res.body.destroy());
  return { ...res, body: body as unknown as Dispatcher.ResponseData['body'] };
}

/** A stream whose first chunks were read to look at its first event: those chunks, then the rest. */
function replay(
  res: Dispatcher.ResponseData,
  head: readonly Buffer[],
  rest: AsyncIterator<Buffer>,
): Dispatcher.ResponseData {
  async function* all(): AsyncGenerator<Buffer> {
    yield* head;
    for (;;) {
      const next = await rest.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return withChunks(res, all());
}

/** A failed response read whole (bounded), to give the client unchanged should nothing better come. */
export async function bufferedAnswer(
  res: Dispatcher.ResponseData,
): Promise<{ json: unknown; replay(): Dispatcher.ResponseData }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let cut = false;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > ERROR_BODY_LIMIT) {
        cut = true;
        res.body.destroy();
        break;
      }
      chunks.push(chunk);
    }
  } catch {
    // An error body that broke off: what came is what the client would get.
    cut = true;
  }
  const raw = Buffer.concat(chunks);
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    json = undefined;
  }
  return {
    json,
    replay: () => {
      const headers = { ...res.headers };
      if (cut) delete headers['content-length'];
      return withChunks({ ...res, headers }, [raw]);
    },
  };
}

/** An exchange in progress as the replica's set of them sees it. */
export interface OpenExchange {
  /** Whose it is: the key it runs on and that key's user. */
  readonly owner: { readonly user: { readonly id: string }; readonly key: { readonly id: string } };
  shutdown(): void;
  /** Ends it with `reason` (its key revoked, its user deactivated), as shutdown does. */
  end(reason: BridgeError): void;
}

/**
 * One metered exchange, from the moment the request is described to its last record: the one
 * engine every metered request runs on (docs/architecture.md). It owns the client's response (head
 * written once, stream or JSON), the upstream rounds (admission, send, relay with metering and the
 * idle watchdog, client-gone and shutdown handling) and the one `finish` that hands each round's
 * record over.
 */
export class Exchange implements OpenExchange {
  private gone = false;
  private stopping = false;
  /** Why it was ended early, when not for shutdown (end). */
  private endReason: BridgeError | undefined;
  /** The caller (its principal, shared by its requests: nothing made per request). */
  readonly owner: Principal;
  /** Its place among the user's requests in flight (AdmissionTicket.place), given back by release. */
  private place: (() => void) | undefined;
  private readonly abort = new Cancellation();
  /** What the client has been sent: nothing, a stream's head, or a whole response. */
  private head: 'none' | 'stream' | 'done' = 'none';
  /** Marks a round's tool calls on its record (tool injection), including when a round fails. */
  markCalls: CallMarker = (facts) => facts;
  readonly first: Round;
  /** The tool-call rules for this request's caller, looked up once. */
  private readonly policy: CallPolicy | undefined;
  /** The hold on the client's stream, one for all rounds (the client sees one answer). */
  private hold: StreamHold | undefined;

  constructor(
    readonly adapter: ProviderAdapter,
    private readonly deps: ExchangeDeps,
    readonly req: ProxyRequest,
    private readonly reply: ProxyReply,
    readonly metered: Metered,
  ) {
    this.first = this.round(1, metered.start, metered.prepared);
    this.owner = metered.start.principal;
    this.policy = deps.toolPolicy?.(metered.start);
    // The engine writes the client's response itself, head, stream and errors alike.
    reply.hijack();
    deps.open.add(this);
    reply.raw.on('close', () => {
      deps.open.delete(this);
      if (!reply.raw.writableFinished) {
        this.gone = true;
        this.abort.abort();
      }
    });
  }

  get clientGone(): boolean {
    return this.gone;
  }

  get shuttingDown(): boolean {
    return this.stopping;
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** The client already has a stream's head: later errors go as an error event. */
  get streaming(): boolean {
    return this.head === 'stream';
  }

  /**
   * Lets go of the request once the exchange is over: its body, parsed and raw, its rounds, the
   * client's request and response. Something still reaches each ended exchange until V8's next
   * full collection (a heap snapshot, which collects fully first, finds none left), and through it
   * the whole request: the young-generation collections copied and then promoted every request,
   * 9 % of all the bridge allocated, where a bare proxy promotes 2 %. Released here, 2.5 %
   * (docs/performance.md, "What outlived each request"). Nothing reads these after runExchange:
   * shutdown and the client-gone listener need none of them.
   */
  release(): void {
    this.place?.();
    this.place = undefined;
    const self = this as unknown as Record<'req' | 'reply' | 'metered' | 'first' | 'hold', unknown>;
    self.req = undefined;
    self.reply = undefined;
    self.metered = undefined;
    self.first = undefined;
    self.hold = undefined;
    this.markCalls = (facts) => facts;
  }

  /** Ends the exchange for shutdown: the upstream request is aborted, a stream ends with an error event. */
  shutdown(): void {
    this.stopping = true;
    this.abort.abort();
  }

  end(reason: BridgeError): void {
    this.endReason ??= reason;
    this.shutdown();
  }

  /** What the client is told when the exchange was ended early: shutdown, or `end`'s reason. */
  get stopError(): BridgeError {
    return this.endReason ?? shutdownError();
  }

  private round(n: number, start: InterceptionStart, prepared: PreparedRequest): Round {
    return {
      n,
      start,
      prepared,
      observer: this.deps.telemetry.begin(start, this.req.headers),
      probe: false,
      httpStatus: 0,
      upstreamRequestId: null,
      endedAt: start.startedAt,
      streamed: false,
      target: this.home(start),
      keyName: null,
      attempts: [],
      contentEvents: 0,
      eventsRead: 0,
      answerBytes: 0,
    };
  }

  /** A further round with a new body: its own interception id and record, same principal and client. */
  nextRound(from: Round, body: JsonObject, prepared: PreparedRequest): Round {
    const facts = checkedRequestFacts(
      this.metered.api.describeRequest(body, this.req.headers),
      this.deps.recorder.redactor,
    );
    const start: InterceptionStart = {
      ...from.start,
      id: `int_${randomUUID()}`,
      // The model and session are the first round's as the route resolved them (a Bedrock model
      // from its path and mapped to its price id, the client's session header): the body alone
      // does not say, and a round recorded under another name would go unpriced and uncapped.
      request: {
        ...facts,
        model: from.start.request.model ?? facts.model,
        sessionId: from.start.request.sessionId ?? facts.sessionId,
      },
      startedAt: this.deps.now(),
    };
    return this.round(from.n + 1, start, prepared);
  }

  /**
   * Passes a round through admission (policy, rate limits, budget, breaker...). A refusal is
   * recorded on the round and answered to the client; returns whether the round may go upstream.
   */
  admit(round: Round, decided?: (admitted: boolean) => void): boolean | Promise<boolean> {
    const unheld = this.policy?.judge ? this.metered.api.toolHold?.unheld?.(this.metered.body) : null;
    const ticket: AdmissionTicket = {
      start: round.start,
      // As the estimates count it: an inline image as the tokens it costs, not its base64 size.
      bodyBytes: estimatedBodyBytes(round.prepared.bytes),
      probe: false,
      ...(this.place ? { place: this.place } : {}),
      ...(round !== this.first ? { continuing: true } : {}),
      ...(this.metered.targets ? { targets: this.metered.targets } : {}),
      // Raised by the gates once the request has counted against the rate limits.
      ...(unheld ? { refusal: new BridgeError('unsupported_parameter', unheld) } : {}),
    };
    // Usually answered at once, and then so is this: a promise only when a gate needs one (a
    // budget's reservation). No promise and hop of its own on every request's path.
    let pending: void | Promise<void>;
    try {
      pending = this.deps.admit(ticket);
    } catch (err) {
      return this.admitted(round, ticket, decided, err);
    }
    return pending
      ? pending.then(
          () => this.admitted(round, ticket, decided),
          (err: unknown) => this.admitted(round, ticket, decided, err),
        )
      : this.admitted(round, ticket, decided);
  }

  /** Admission's answer for a round: recorded and answered when refused (`err`), started otherwise. */
  private admitted(
    round: Round,
    ticket: AdmissionTicket,
    decided: ((admitted: boolean) => void) | undefined,
    err?: unknown,
  ): boolean {
    // Taken by the first round, refused by a later gate or not: the exchange gives it back (release).
    this.place ??= ticket.place;
    if (err !== undefined) {
      if (!isBridgeError(err)) throw err;
      decided?.(false);
      round.httpStatus = err.status;
      round.endedAt = this.deps.now();
      this.finish(round, 'error', null, { type: err.code, message: err.message }, undefined, 'refused');
      this.fail(err);
      return false;
    }
    round.probe = ticket.probe;
    if (ticket.targets) round.plan = ticket.targets;
    decided?.(true);
    this.deps.events?.started(round.start);
    return true;
  }

  /** The request's own instance as its one target: every request the routing table does not name. */
  private home(start: InterceptionStart): AttemptTarget {
    return {
      adapter: this.adapter,
      api: this.metered.api,
      target: this.metered.target,
      model: null,
      recordModel: start.request.model,
      ...(start.request.priceAs ? { priceAs: start.request.priceAs } : {}),
    };
  }

  /**
   * Sends a round upstream, trying the request's targets in order (docs/routing.md): the next one
   * (or another key of a pool) on a connection error, 429, 529, 5xx, a credential refusal, an open
   * breaker, or an error as the stream's first event, all while nothing has reached the client. The
   * answer returned is the first one that served, or the last one's error; undefined when it
   * failed without an answer (already recorded and answered).
   */
  async send(round: Round): Promise<Dispatcher.ResponseData | undefined> {
    const plan = round.plan ?? this.metered.targets ?? [round.target];
    const routed = this.metered.targets !== undefined;
    const failed: Tried[] = [];
    for (let i = 0; i < plan.length && !failed.at(-1)?.final; i++) {
      const t = plan[i]!;
      const last = i === plan.length - 1;
      const keys = new Set<string>();
      let probe = round.probe;
      if (routed) {
        const skip = this.unavailable(t);
        if (skip) {
          failed.push(skip);
          continue;
        }
        const admission = this.deps.breakers.admit(t.adapter.id, t.recordModel);
        if (!admission.admitted) {
          const seconds = Math.max(1, Math.ceil(admission.retryAfterMs / 1000));
          failed.push(
            this.skipped(
              t,
              'circuit_open',
              new BridgeError(
                'circuit_open',
                `The provider has been failing for ${t.recordModel ?? 'this model'}; retry in ${seconds}s.`,
                { headers: { 'retry-after': String(seconds) } },
              ),
            ),
          );
          continue;
        }
        probe = admission.probe;
      }
      // Counted per target: a pool of many keys failing together (one organisation's shared rate
      // limit) must not use up the tries of the targets after it.
      for (let tries = 0; tries < ATTEMPTS_PER_TARGET; tries++) {
        const tried = await this.attempt(round, t, probe, keys, !last);
        if (tried.served) {
          this.settleFailed(failed, routed);
          this.choose(round, tried, failed);
          return tried.served;
        }
        if (tried.gone) {
          // The client left while this attempt was under way: recorded as it, with the failures before it.
          this.settleFailed(failed, routed);
          this.choose(round, tried, failed);
          round.endedAt = tried.endedAt;
          round.streamed = this.head === 'stream';
          // The provider had the request (a whole answer is generated before its headers come):
          // not a free one, floored from the body as input as an unread answer is.
          const floor = {
            ...unreadFacts(round, 0),
            model: round.start.request.model,
          };
          this.finish(round, 'client_aborted', floor, null, undefined, 'client gone');
          return undefined;
        }
        if (tried.repeat) break;
        failed.push(tried);
        if (tried.final) break;
        // Another key of the same instance, when the failure was the key's and the pool may have one.
        if (!tried.sameTarget || tried.keyName === null) break;
      }
    }
    const final = failed.pop();
    // Every way out of the loop above without an answer leaves at least one failed attempt.
    if (!final) throw new BridgeError('internal_error', 'no upstream attempt was made');
    this.settleFailed(failed, routed);
    this.choose(round, final, failed);
    if (final.answer) return final.answer();
    round.endedAt = final.endedAt;
    round.streamed = this.head === 'stream';
    const failure = final.failure!;
    round.httpStatus = failure.status;
    // Not a free request: floored from its body, as an answer the client left is (the provider
    // may be generating it still). Recorded at $0, a member could make any long non-streamed
    // generation free of cost and budgets.
    const floor = final.sentWhole ? { ...unreadFacts(round, 0), model: round.start.request.model } : null;
    this.finish(
      round,
      'error',
      floor,
      { type: failure.code, message: failure.message },
      final.healthy,
      'upstream failed',
    );
    this.fail(failure);
    return undefined;
  }

  /** A target that cannot be asked at all: an instance without its credential. */
  private unavailable(t: AttemptTarget): Tried | undefined {
    if (this.deps.serves ? this.deps.serves(t.adapter) : t.adapter.configured) return undefined;
    return this.skipped(t, 'not_configured', new BridgeError('provider_not_configured'));
  }

  private skipped(t: AttemptTarget, reason: FailoverReason, failure: BridgeError): Tried {
    const at = this.deps.now();
    return {
      target: t,
      keyName: null,
      httpStatus: 0,
      error: { type: failure.code, message: failure.message },
      startedAt: at,
      endedAt: at,
      reason,
      failure,
      sameTarget: false,
      probe: false,
      healthy: undefined,
    };
  }

  /** Each routed attempt left for another tells its target's breaker how it went. */
  private settleFailed(failed: readonly Tried[], routed: boolean): void {
    for (const f of failed) {
      if (routed && f.healthy !== undefined && !(f.httpStatus === 429 && f.keyName !== null))
        this.deps.breakers.record(f.target.adapter.id, f.target.recordModel, f.healthy, f.probe);
      // A half-open probe whose outcome says nothing of the provider (this machine short of
      // descriptors, a pool key's 429, no credential) still ends: kept, it held the breaker
      // half-open for good and the target was skipped as `circuit_open` from then on.
      else if (f.probe) this.deps.breakers.record(f.target.adapter.id, f.target.recordModel, undefined, true);
    }
  }

  /** Makes `tried` the round's recorded attempt: its instance, model and key; the others listed before it. */
  private choose(round: Round, tried: Tried, failed: readonly Tried[]): void {
    const t = tried.target;
    if (t !== round.target || t.recordModel !== round.start.request.model) {
      const { priceAs: _home, ...request } = round.start.request;
      round.start = {
        ...round.start,
        provider: t.adapter.id,
        request: { ...request, model: t.recordModel, ...(t.priceAs ? { priceAs: t.priceAs } : {}) },
      };
    }
    round.target = t;
    round.keyName = tried.keyName;
    if (tried.lease) round.lease = tried.lease;
    round.probe = tried.probe;
    round.attempts = failed.map((f) => ({
      provider: f.target.adapter.id,
      model: f.target.recordModel,
      keyName: f.keyName,
      httpStatus: f.httpStatus,
      error: f.error,
      startedAt: f.startedAt.toISOString(),
      endedAt: f.endedAt.toISOString(),
    }));
    for (let i = 0; i < failed.length; i++) {
      const from = failed[i]!;
      const to = failed[i + 1]?.target ?? t;
      if (from.reason) this.deps.failedOver?.(from.target.adapter.id, to.adapter.id, from.reason);
    }
  }

  /**
   * One upstream attempt on one target. Its answer is returned as `served` when it is the client's
   * (success, a failure nothing else can replace, or the last option); a failure another attempt
   * may replace is read whole (bounded) and kept as `answer`, so that, should it be the last, the
   * client still gets it as the provider sent it.
   */
  private async attempt(
    round: Round,
    t: AttemptTarget,
    probe: boolean,
    keys: Set<string>,
    hasNext: boolean,
  ): Promise<Tried> {
    const startedAt = this.deps.now();
    round.sentAt = startedAt.getTime();
    const base = { target: t, startedAt, probe };
    // The user's own credential (bring your own key) wins over the instance's pool.
    const source =
      this.metered.credentials ?? this.deps.credentials?.(t.adapter) ?? singleCredential(t.adapter);
    let lease: CredentialLease;
    try {
      const got = source.acquire();
      lease = got instanceof Promise ? await got : got;
    } catch (err) {
      if (!isBridgeError(err)) throw err;
      return {
        ...base,
        keyName: null,
        httpStatus: 0,
        error: { type: err.code, message: err.message },
        endedAt: this.deps.now(),
        reason: 'no_credential',
        failure: err,
        sameTarget: false,
        healthy: undefined,
      };
    }
    if (lease.keyName !== null) {
      if (keys.has(lease.keyName))
        // The pool has no key this request has not tried: the next target, if any.
        return {
          ...base,
          keyName: lease.keyName,
          httpStatus: 0,
          error: { type: 'no_untried_key', message: 'every usable key of the instance was tried' },
          endedAt: this.deps.now(),
          repeat: true,
        };
      keys.add(lease.keyName);
    }
    const url = t.adapter.upstreamUrl(t.target);
    let res: Dispatcher.ResponseData;
    try {
      // Assigned onto the fresh object rather than spread: on Node 20 a spread clone that then
      // gains keys costs microseconds (docs/performance.md, "Spread clones").
      const headers = Object.assign(
        upstreamRequestHeaders(this.req.headers),
        lease.headers,
        round.observer.upstreamStart('POST', url),
      );
      res = await sendUpstream(t.adapter, 'POST', {
        target: t.target,
        bytes: bodyFor(round.prepared.bytes, t.model),
        headers,
        dispatcher: this.deps.dispatcher,
        signal: this.abort,
      });
    } catch (err) {
      const endedAt = this.deps.now();
      lease.report({ status: 0 });
      if (this.gone)
        return { ...base, keyName: lease.keyName, httpStatus: 0, error: null, endedAt, gone: true };
      const failure = this.stopping ? this.stopError : isBridgeError(err) ? err : upstreamFailure(err);
      // Refused before it was sent (upstreamFailure): says nothing of the provider, and would be
      // refused the same by any other target.
      const unsent = failure.code === 'invalid_request';
      // This machine out of descriptors or memory for the connection: says nothing of the
      // provider either (not counted against it), but another target may still be reached.
      const shortage = failure.code === 'server_busy';
      if (shortage) this.req.log.error({ code: (err as { code?: string }).code }, failure.message);
      return {
        ...base,
        keyName: lease.keyName,
        httpStatus: 0,
        error: { type: failure.code, message: failure.message },
        endedAt,
        reason: this.stopping || unsent || shortage ? undefined : 'unreachable',
        failure,
        sameTarget: false,
        healthy: this.stopping || unsent || shortage ? undefined : false,
        final: this.stopping || unsent,
        ...(err instanceof undiciErrors.HeadersTimeoutError ? { sentWhole: true } : {}),
      };
    }
    round.observer.upstreamHeaders(res.statusCode);
    if (res.headers['content-encoding'] !== undefined) res = decodedAnswer(res);
    // An organisation key's error answer says in its body whose fault it is (a key revoked or out
    // of credit, or a refusal of only what was asked): read first, reported so. A member's own key
    // (BYOK) is theirs to mend.
    const read =
      !this.metered.credentials && BLAMED_STATUSES.has(res.statusCode)
        ? await bufferedAnswer(res)
        : undefined;
    const blame = read ? reportBlame(lease, res.statusCode, read.json) : undefined;
    if (blame === undefined) reportAnswer(lease, res, this.deps.now().getTime());
    const served = {
      target: t,
      startedAt,
      probe,
      keyName: lease.keyName,
      lease,
      httpStatus: res.statusCode,
      error: null,
    };
    // The organisation's credential refused, not a member's own (orgCredentialRefused): a 502
    // naming the instance; another key of a pool (unless only this request's ask was refused), then
    // the next target, are tried first.
    if (refusesOrgCredential(blame, res.statusCode)) {
      const error = errorFromBody(res.statusCode, read!.json);
      return {
        ...served,
        error,
        endedAt: this.deps.now(),
        reason: 'unauthorized',
        failure: orgCredentialRefused(t.adapter.id, error.message, res.statusCode),
        sameTarget: blame === 'key' && lease.keyName !== null,
        // The provider answered: its breaker (outages) is not this key's business.
        healthy: true,
      };
    }
    // Refused for what it asks (a 403 on what the project may not use, one request over the whole
    // per-minute limit): the member's answer as the provider sent it, held against nothing.
    if (blame === 'request') {
      round.requestFault = true;
      return this.accept(round, served, read!.replay(), this.deps.now());
    }
    const reason = failoverReason(res.statusCode);
    // The key's own fault: a pool may have another key for the same instance.
    const retryKey = lease.keyName !== null && KEY_FAULTS.has(res.statusCode);
    if (!retryKey && !(hasNext && reason !== undefined)) {
      // The client's answer; a stream with another target behind it is looked at first.
      if (read) return this.accept(round, served, read.replay(), this.deps.now());
      return hasNext && res.statusCode < 400 && isEventStream(res)
        ? this.peek(round, t, served, res)
        : this.accept(round, served, res, this.deps.now());
    }
    const answer = read ?? (await bufferedAnswer(res));
    const endedAt = this.deps.now();
    return {
      ...served,
      error: errorFromBody(res.statusCode, answer.json),
      endedAt,
      reason: reason ?? 'unauthorized',
      answer: () => {
        this.noteHeaders(round, t, res);
        return answer.replay();
      },
      sameTarget: retryKey,
      healthy: !isProviderFailure(res.statusCode),
    };
  }

  /** The attempt whose answer the client gets. */
  private accept(
    round: Round,
    tried: Omit<Tried, 'endedAt'>,
    res: Dispatcher.ResponseData,
    endedAt: Date,
  ): Tried {
    this.noteHeaders(round, tried.target, res);
    // The new keys first, set after the spread: the same values as `{ ...tried, endedAt, served }`
    // without a spread clone gaining keys (docs/performance.md, "Spread clones").
    const accepted: Tried = { endedAt, served: res, ...tried };
    accepted.endedAt = endedAt;
    accepted.served = res;
    return accepted;
  }

  private noteHeaders(round: Round, t: AttemptTarget, res: Dispatcher.ResponseData): void {
    round.httpStatus = res.statusCode;
    round.upstreamRequestId = headerValue(res.headers[t.adapter.requestIdHeader]);
  }

  /**
   * A stream with another target behind it: held until its first SSE event is read (past the
   * API's `streamPreamble`, if it has one). An error there (or the stream ending or breaking before
   * one) means nothing usable came and nothing was sent, so the next target is tried, unless the
   * error is the request's fault (`isRequestFault`); otherwise the stream is the client's, replayed
   * from its start.
   */
  private async peek(
    round: Round,
    t: AttemptTarget,
    tried: Omit<Tried, 'endedAt'>,
    res: Dispatcher.ResponseData,
  ): Promise<Tried> {
    const meter = t.api.createStreamMeter(round.prepared);
    const preamble = t.api.streamPreamble ?? [];
    let seen = false;
    const parser = createParser({
      onEvent: (e) => {
        meter.onEvent({ event: e.event, data: e.data, id: e.id }, this.deps.now());
        // An error ends the wait whatever its name; an opening event does not.
        if (meter.result().error !== null || !preamble.includes(e.event ?? '')) seen = true;
      },
    });
    const decoder = new TextDecoder();
    const chunks: Buffer[] = [];
    const it = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    const idle = idleWatchdog(this.deps.idleTimeoutMs, (err) => res.body.destroy(err));
    let broke: BridgeError | undefined;
    let ended = false;
    try {
      while (!seen) {
        const next = await it.next();
        idle.touch();
        if (next.done) {
          ended = true;
          break;
        }
        chunks.push(next.value);
        parser.feed(decoder.decode(next.value, { stream: true }));
      }
    } catch (err) {
      broke = this.stopping ? this.stopError : isBridgeError(err) ? err : upstreamFailure(err);
    } finally {
      idle.stop();
    }
    const endedAt = this.deps.now();
    if (this.gone) {
      res.body.destroy();
      return { ...tried, endedAt, gone: true };
    }
    const error = broke
      ? { type: broke.code, message: broke.message }
      : ended && !seen
        ? { type: 'upstream_protocol_error', message: 'the stream ended before its first event' }
        : meter.result().error;
    // An error the request caused goes to the client as an unrouted stream's would: another target
    // would refuse it too, and it says nothing of this one's health. So does one request over the
    // whole per-minute limit, said in the words of a rate limit.
    if (
      error === null ||
      (broke === undefined && (isRequestFault(error.type) || TOO_LARGE.test(error.message)))
    )
      return this.accept(round, tried, replay(res, chunks, it), endedAt);
    res.body.destroy();
    return {
      ...tried,
      error,
      endedAt,
      reason: broke ? 'unreachable' : 'stream_error',
      failure: new BridgeError(
        broke?.code ?? 'upstream_protocol_error',
        `The provider's stream failed before its first event (${error.message}).`,
      ),
      sameTarget: false,
      // A rate limit in the stream is tried elsewhere, but is no outage: not counted against the
      // breaker, as an HTTP 429 is not (isProviderFailure).
      healthy: broke === undefined && RATE_LIMITED_IN_STREAM.has(error.type),
    };
  }
  /**
   * Reads a round's response as `view` says, writing to the client what it may see as it arrives.
   * Undefined when the round failed or the client left (already recorded and answered); otherwise
   * the round is read but not yet recorded, except for `relay`, which records it and ends the
   * client's response.
   */
  // Not async: each way hands back its reader's own promise, with no promise and hops of its own.
  read(round: Round, res: Dispatcher.ResponseData, view: RoundView): Promise<RoundRead | undefined> {
    const sse = isEventStream(res);
    // An instance that rewrites upstream errors into the client's shape reads them whole first.
    if (res.statusCode >= 400 && !sse && round.target.adapter.clientErrorBody)
      return this.unexpected(round, res);
    if (view.kind === 'relay') return this.relay(round, res, sse);
    if (view.kind === 'events' && sse) return this.events(round, res, view.filter);
    const json = view.kind === 'collect' && res.statusCode < 400;
    if (json && (headerValue(res.headers['content-type']) ?? '').includes('json'))
      return this.collect(round, res);
    return this.unexpected(round, res);
  }

  /**
   * Writes the client's head from an upstream answer, unless one was written already (a later
   * round appends to the open stream). A whole answer keeps its content-length; a stream cannot.
   */
  private openHead(res: Dispatcher.ResponseData, as: 'stream' | 'done'): boolean {
    if (this.head !== 'none') return false;
    const headers = clientResponseHeaders(res.headers, as === 'done');
    headers['x-aibridge-interception-id'] = this.metered.start.id;
    this.reply.raw.writeHead(res.statusCode, headers);
    this.head = as;
    return true;
  }

  /**
   * The client gets the response as it comes; the round is recorded when it ends. When a deny rule
   * may apply, the API's tool hold sits between the upstream and the client (docs/governance.md).
   */
  private async relay(round: Round, res: Dispatcher.ResponseData, sse: boolean): Promise<undefined> {
    const toolHold = this.policy?.judge ? this.metered.api.toolHold : undefined;
    const answer = this.metered.answerRewrite;
    // A whole answer the client could see complete before its end (content-length) is read whole
    // first when its record must be stored before the client has it (AIBRIDGE_AUDIT_ACK=stored).
    if ((toolHold || answer || this.deps.ackStored) && !sse && res.statusCode < 400)
      return this.relayJudged(round, res, (json) => {
        const held = toolHold ? toolHold.rewriteJson(json, this.policy!.judge!) : undefined;
        return answer ? (answer.json(held ?? json) ?? held) : held;
      });
    const rewrite = sse && (round.prepared.rewriteStream || answer !== undefined);
    round.streamed = sse;
    if (this.openHead(res, sse ? 'stream' : 'done') && sse) round.observer.streamOpened();
    const meter = sse ? round.target.api.createStreamMeter(round.prepared) : undefined;
    const hold = sse ? this.streamHold() : undefined;
    const copy: Buffer[] = [];
    let copied = 0;
    const ok = await this.pump(
      round,
      res,
      meter,
      rewrite ? (v) => v : undefined,
      (chunk) => {
        if (!meter && copied < JSON_READ_LIMIT) {
          copy.push(chunk);
          copied += chunk.length;
        }
      },
      hold,
    );
    if (!ok) return undefined;
    // Without the wait the answer ends first: recording costs the client nothing.
    if (!this.deps.ackStored) this.endAnswer();
    let facts: ResponseFacts | null = this.streamFacts(round, meter, 'complete');
    let error: InterceptionError | null = facts?.error ?? null;
    if (!meter) {
      let json: unknown;
      try {
        // Most answers arrive in one chunk: read in place, not copied into a new buffer first.
        json = JSON.parse((copy.length === 1 ? copy[0]! : Buffer.concat(copy)).toString('utf8'));
      } catch {
        // Not JSON (or over the copy limit): the response went through; only its usage is unknown.
        json = undefined;
      }
      if (res.statusCode >= 400) error = errorFromBody(res.statusCode, json);
      else if (json === undefined && round.answerBytes > 0) {
        // An answer the client has but the bridge could not read is not a free one.
        facts = unreadFacts(round, round.answerBytes);
      } else {
        facts = withAnswerFloor(round.target.api.fromJson(json, this.deps.now()), round);
        error = facts.error;
      }
    }
    const failed = res.statusCode >= 400 || error !== null;
    const stored = this.finish(
      round,
      failed ? 'error' : 'ok',
      facts,
      error,
      providerWasHealthy(round, res.statusCode),
      'not run',
    );
    if (this.deps.ackStored) {
      await this.acknowledged(stored);
      this.endAnswer();
    }
    return undefined;
  }

  private endAnswer(): void {
    endAnswerWithin(this.reply.raw, this.deps.idleTimeoutMs);
    this.head = 'done';
  }

  /**
   * With AIBRIDGE_AUDIT_ACK=stored, the end of the client's answer waits (at most ACK_WAIT_MS) for
   * its record to be in the store: an answer the client saw complete is never lost to a replica
   * killed a moment later (docs/performance.md#scale-out). Its bytes have all gone already.
   */
  private async acknowledged(stored: Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      stored,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ACK_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  /**
   * A whole JSON answer read before any of it is sent, so denied tool calls can be replaced: the
   * bytes as they came when nothing was, else the rewritten answer.
   */
  private async relayJudged(
    round: Round,
    res: Dispatcher.ResponseData,
    rewrite: (json: unknown) => unknown,
  ): Promise<undefined> {
    const read = await this.collect(round, res);
    if (!read) return undefined;
    const changed = rewrite(read.json);
    let payload: Buffer;
    try {
      payload = changed === undefined ? read.raw! : Buffer.from(JSON.stringify(changed));
    } catch (cause) {
      // An answer JSON.stringify cannot write (a model's tool arguments nested ~5,000 levels deep,
      // beside a denied call).
      throw this.paidRoundFailed(round, read.facts, cause);
    }
    const error = read.facts.error;
    const answer = (): void => this.sendJson(res.statusCode, res.headers, payload);
    if (!this.deps.ackStored) answer();
    const stored = this.finish(round, error ? 'error' : 'ok', read.facts, error, true, 'not run');
    if (this.deps.ackStored) {
      await this.acknowledged(stored);
      answer();
    }
    return undefined;
  }

  /** SSE events through the strategy's filter into a stream that stays open for later rounds. */
  private async events(
    round: Round,
    res: Dispatcher.ResponseData,
    filter: (ev: SseEvent) => EventVerdict,
  ): Promise<RoundRead | undefined> {
    round.streamed = true;
    this.openHead(res, 'stream');
    round.observer.streamOpened();
    const meter = round.target.api.createStreamMeter(round.prepared);
    const ok = await this.pump(round, res, meter, (_v, ev) => filter(ev), undefined, this.streamHold());
    return ok ? { facts: this.streamFacts(round, meter, 'complete')! } : undefined;
  }

  /**
   * Feeds a round's body through: chunks (or, when `verdict` is given, the events the verdicts
   * keep) go to the client as they arrive, SSE events to the meter. False when the round failed or
   * the client left, in which case it is recorded and the client's response ended here.
   */
  private async pump(
    round: Round,
    res: Dispatcher.ResponseData,
    meter: StreamMeter | undefined,
    verdict: ((meterVerdict: EventVerdict, ev: SseEvent) => EventVerdict) | undefined,
    onChunk?: (chunk: Buffer) => void,
    hold?: StreamHold,
  ): Promise<boolean> {
    const out = this.reply.raw;
    const answer = this.metered.answerRewrite;
    const encoding = res.headers['content-encoding'];
    if (encoding !== undefined && String(encoding).trim().toLowerCase() !== 'identity')
      round.undecoded = true;
    let pending = '';
    const progress = meter ? this.deps.events?.progress(round.start) : undefined;
    // The stored response the stream answers with, noted as the caller's once it is named.
    let named = meter?.responseId === undefined;
    // And its stored items, once the stream completes it: a client may name them on that event.
    let itemsNamed = meter?.completedItems === undefined;
    const parser = meter
      ? createParser({
          onEvent: (e) => {
            const ev = { event: e.event, data: e.data, id: e.id };
            const at = this.deps.now();
            round.eventsRead++;
            if (isContentEvent(e.event, e.data) && round.contentEvents++ === 0)
              round.firstContentAt = at.getTime();
            const v = meter.onEvent(ev, at);
            progress?.(meter);
            if (!named) {
              const id = meter.responseId!();
              if (id !== null) {
                named = true;
                this.deps.recorder.responseNamed(round.start, id);
              }
            }
            if (!itemsNamed) {
              const items = meter.completedItems!();
              if (items !== null) {
                itemsNamed = true;
                const id = meter.responseId?.() ?? null;
                if (id !== null && items.length > 0) this.deps.recorder.responseNamed(round.start, id, items);
              }
            }
            if (!verdict) return;
            const keep = verdict(v, ev);
            if (keep.action === 'drop') return;
            const data = keep.action === 'replace' ? keep.data : e.data;
            pending += serializeEvent(e, answer ? answer.event(ev, data) : data);
          },
          // Rewritten event by event, a stream keeps its comments: a provider's heartbeats (`: ping`)
          // are what keeps a long think's connection alive through proxies and client timeouts.
          onComment: (comment) => {
            round.eventsRead++;
            if (verdict) pending += comment === '' ? ':\n\n' : `: ${comment}\n\n`;
          },
        })
      : undefined;
    // Only an event stream is decoded; a JSON answer's chunks go through as they are. A byte order
    // mark is dropped by the decoder: kept, the parser and the hold read the first field's name
    // with it, and a denied call in the first event went through unjudged.
    const decoder = parser ? new TextDecoder() : undefined;
    /** Whether the text so far ends with a line break: only then is a last unterminated event whole. */
    let lineEnded = true;
    const idle = answerWatchdog(res.body, this.deps.idleTimeoutMs, (err) => res.body.destroy(err));
    try {
      await eachChunk(res.body, (chunk) => {
        idle.touch();
        round.answerBytes += chunk.length;
        const text = decoder ? decoder.decode(chunk, { stream: true }) : '';
        if (text !== '') {
          const c = text.charCodeAt(text.length - 1);
          lineEnded = c === 10 || c === 13;
        }
        let held: string | undefined;
        try {
          if (parser) parser.feed(text);
          onChunk?.(chunk);
          // What the client may see now: everything but a tool call still streaming in.
          if (hold) held = hold.push(verdict ? pending : text);
        } catch (err) {
          // The bridge's own failure over what came (a rewritten event JSON.stringify cannot write),
          // not the provider's: it must not count against the provider+model's breaker.
          throw isBridgeError(err) ? err : new BridgeError('internal_error', undefined, { cause: err });
        }
        let ok = true;
        if (held !== undefined) {
          pending = '';
          if (held !== '') ok = out.write(held);
        } else if (!verdict) ok = out.write(chunk);
        else if (pending !== '') {
          ok = out.write(pending);
          pending = '';
        }
        round.observer.firstByte();
        if (this.gone) return 'stop';
        // The next chunk waits until the client can take it, or has gone; the provider is not
        // what is waited on meanwhile. A client that reads nothing for the idle timeout is left.
        if (!ok) {
          return clientCaughtUp(out, idle, this.deps.idleTimeoutMs).then((drained) => {
            if (!drained) {
              this.req.log.warn('client stopped reading the answer; closing its connection');
              this.gone = true;
              this.abort.abort();
              out.destroy();
            }
            return this.gone ? 'stop' : undefined;
          });
        }
        return undefined;
      });
    } catch (err) {
      idle.stop();
      round.endedAt = this.deps.now();
      if (this.gone) return this.abandoned(round, meter);
      // A BridgeError is the bridge's own reason to stop reading (an answer over the size limit).
      const failure = this.stopping ? this.stopError : isBridgeError(err) ? err : upstreamFailure(err, true);
      this.req.log.warn({ err, code: failure.code }, 'upstream failed mid-response');
      // Cut before its end (the provider's connection broke, or the bridge shuts down): the usage
      // events a stream ends with may never have come, while what the client read is billed.
      const facts = this.streamFacts(round, meter, 'abandoned');
      this.finish(
        round,
        'error',
        facts,
        { type: failure.code, message: failure.message },
        failure.code === 'internal_error' ? undefined : false,
        'upstream failed',
      );
      this.fail(failure);
      return false;
    }
    idle.stop();
    round.endedAt = this.deps.now();
    // A last event the stream ended without its blank line after: its usage is counted, and where
    // the stream is rewritten it is written whole, when its last line was (a line cut short is
    // discarded, as an SSE client discards it).
    if (parser && decoder && !this.gone) {
      const tail = decoder.decode();
      const whole = tail === '' ? lineEnded : /[\r\n]$/.test(tail);
      parser.feed(`${tail}\n\n`);
      if (verdict && pending !== '') {
        const last = !whole ? '' : hold ? hold.push(pending) : pending;
        pending = '';
        if (last !== '') out.write(last);
      }
    }
    const rest = hold && !this.gone ? hold.end() : '';
    if (rest !== '') out.write(rest);
    if (this.gone) {
      res.body.destroy();
      return this.abandoned(round, meter);
    }
    return true;
  }

  /** Records a round the client left before its end (its usage floored: usage-floor.ts). */
  private abandoned(round: Round, meter: StreamMeter | undefined): false {
    this.finish(
      round,
      'client_aborted',
      this.streamFacts(round, meter, 'abandoned'),
      null,
      undefined,
      'client gone',
    );
    return false;
  }

  /**
   * A stream's facts with its usage floor (usage-floor.ts). Without a meter (a JSON answer, or
   * Gemini's JSON array of chunks) cut before its end, the usage it would have ended with is not
   * there: the floor is the body and the bytes that came, as for an answer the bridge cannot read.
   */
  private streamFacts(
    round: Round,
    meter: StreamMeter | undefined,
    ended: StreamSeen['ended'],
  ): ResponseFacts | null {
    if (!meter) {
      return ended === 'abandoned' && round.httpStatus < 400 && round.answerBytes > 0
        ? unreadFacts(round, round.answerBytes)
        : null;
    }
    const facts = meter.result();
    // An error answer is the provider's own, whatever its length.
    if (round.httpStatus >= 400) return facts;
    // Bytes came and not one event or comment could be read from them (an encoding the bridge does
    // not decode, or not the stream the API speaks): billed as an answer the bridge could not read,
    // not as a free one. A stream it could read keeps its own floor below (hidden reasoning and all).
    if (
      round.answerBytes > 0 &&
      (round.undecoded === true || round.eventsRead === 0) &&
      facts.error === null &&
      totalTokens(facts.usage) === 0
    )
      return unreadFacts(round, round.answerBytes);
    return withUsageFloor(facts, {
      contentEvents: round.contentEvents,
      bodyBytes: round.prepared.bytes.length,
      hiddenMs:
        round.sentAt === undefined
          ? 0
          : Math.max(0, (round.firstContentAt ?? round.endedAt.getTime()) - round.sentAt),
      maxOutputTokens: round.start.request.maxOutputTokens,
      finished: (facts.finishReasons?.length ?? 0) > 0,
      // A stream the provider ended with an error event (Anthropic's `error`, a Bedrock exception
      // frame) was cut as surely as a broken connection: the usage it would have ended with never
      // came (Anthropic's message_start says 1 output token), while what was relayed is billed.
      ended: facts.error !== null && round.contentEvents > 0 ? 'abandoned' : ended,
    });
  }

  /** Reads a JSON answer whole (bounded), writing nothing. */
  private async collect(round: Round, res: Dispatcher.ResponseData): Promise<RoundRead | undefined> {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    const ok = await this.pump(
      round,
      res,
      undefined,
      () => ({ action: 'drop' }),
      (chunk) => {
        size += chunk.length;
        if (size > JSON_READ_LIMIT) {
          tooLarge = true;
          res.body.destroy(new BridgeError('upstream_protocol_error', 'The response is too large to read.'));
        } else chunks.push(chunk);
      },
    );
    if (!ok) return undefined;
    if (tooLarge) return undefined;
    const raw = Buffer.concat(chunks);
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      // Not JSON after all: the client gets it as it came, and it is not a free answer.
      this.finish(
        round,
        'error',
        res.statusCode < 400 ? unreadFacts(round, raw.length) : null,
        { type: 'upstream_protocol_error', message: 'not JSON' },
        false,
        'unreadable response',
      );
      this.sendJson(res.statusCode, res.headers, raw);
      return undefined;
    }
    const facts = round.target.api.fromJson(json, this.deps.now());
    return { facts: res.statusCode < 400 ? withAnswerFloor(facts, round) : facts, json, raw };
  }

  /** A round the provider refused, or answered in a form the view cannot take: the client gets its error. */
  private async unexpected(round: Round, res: Dispatcher.ResponseData): Promise<undefined> {
    // Bounded: an error body or a stray answer is small; what is over the limit is not read.
    let text = '';
    try {
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > JSON_READ_LIMIT) break;
        chunks.push(chunk);
      }
      text = Buffer.concat(chunks).toString('utf8');
    } catch (err) {
      this.req.log.warn({ err }, 'upstream error body could not be read');
    }
    round.endedAt = this.deps.now();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const error = errorFromBody(res.statusCode, json);
    round.streamed = this.head === 'stream';
    this.finish(round, 'error', null, error, providerWasHealthy(round, res.statusCode), 'upstream refused');
    if (this.head === 'stream') {
      this.reply.raw.end(
        this.metered.api.streamError(res.statusCode >= 400 ? res.statusCode : 502, error.type, error.message),
      );
      this.head = 'done';
      return undefined;
    }
    const raw = Buffer.from(text);
    this.sendJson(
      res.statusCode,
      res.headers,
      round.target.adapter.clientErrorBody?.(res.statusCode, raw) ?? raw,
    );
    return undefined;
  }

  /** The client stream's tool hold when a deny rule may apply and the API has one; created once. */
  private streamHold(): StreamHold | undefined {
    const judge = this.policy?.judge;
    const toolHold = this.metered.api.toolHold;
    if (!judge || !toolHold) return undefined;
    this.hold ??= toolHold.createStream(judge);
    return this.hold;
  }

  /**
   * Sends an answer a strategy composed (tool injection) as the client's response, its denied tool
   * calls replaced as in a relayed one (docs/governance.md).
   */
  sendAnswer(status: number, upstreamHeaders: Dispatcher.ResponseData['headers'], answer: unknown): void {
    const judge = this.policy?.judge;
    const held = judge ? this.metered.api.toolHold?.rewriteJson(answer, judge) : undefined;
    const renamed = this.metered.answerRewrite?.json(held ?? answer);
    this.sendJson(status, upstreamHeaders, Buffer.from(JSON.stringify(renamed ?? held ?? answer)));
  }

  /** Sends a whole JSON answer (a composed one, or one the provider gave) as the client's response. */
  sendJson(status: number, upstreamHeaders: Dispatcher.ResponseData['headers'], payload: Buffer): void {
    if (this.head !== 'none') return;
    this.head = 'done';
    // Set on the fresh object, not spread into a new one: a spread clone that gains keys costs
    // microseconds on Node 20 (docs/performance.md, "Spread clones"), and with
    // AIBRIDGE_AUDIT_ACK=stored every JSON answer comes this way.
    const headers = clientResponseHeaders(upstreamHeaders, false);
    headers['content-length'] = String(payload.length);
    headers['x-aibridge-interception-id'] = this.metered.start.id;
    this.reply.raw.writeHead(status, headers);
    endAnswerWithin(this.reply.raw, this.deps.idleTimeoutMs, payload);
  }

  /** Ends an open stream once the strategy has nothing more to send. */
  endStream(): void {
    if (this.head !== 'stream') return;
    endAnswerWithin(this.reply.raw, this.deps.idleTimeoutMs);
    this.head = 'done';
  }

  /**
   * Ends the client's response with an error: in the provider's error shape with its status while
   * nothing was sent, as the API's error event on an open stream, else the connection is cut.
   */
  fail(err: BridgeError): void {
    if (this.gone) return;
    const out = this.reply.raw;
    if (this.head === 'stream') {
      endAnswerWithin(
        out,
        this.deps.idleTimeoutMs,
        this.metered.api.streamError(err.status, err.code, err.message),
      );
    } else if (this.head === 'none') {
      out.writeHead(err.status, {
        'content-type': 'application/json; charset=utf-8',
        'x-aibridge-interception-id': this.metered.start.id,
        ...err.headers,
      });
      out.end(JSON.stringify(this.adapter.errorBody(err.status, err.code, err.message, err.headers)));
    } else out.destroy();
    this.head = 'done';
  }

  /**
   * A round the provider answered (and was paid for) that the bridge cannot go on from: the
   * client gets the bridge's `internal_error`, and the round is recorded with its usage first.
   * Returns the error to throw.
   */
  paidRoundFailed(round: Round, facts: ResponseFacts, cause: unknown): BridgeError {
    const err = new BridgeError('internal_error', undefined, { cause });
    void this.finish(round, 'error', facts, { type: err.code, message: err.message }, true, 'not run');
    return err;
  }

  /**
   * The one end of a round: telemetry, the breaker (`healthy` undefined when the round says
   * nothing of the provider) and the record, with the strategy's marks on its tool calls.
   */
  finish(
    round: Round,
    status: InterceptionStatus,
    facts: ResponseFacts | null,
    error: InterceptionError | null,
    healthy: boolean | undefined,
    why: string,
  ): Promise<void> {
    const marked = this.markCalls(facts, round, why);
    const response = marked && this.policy ? this.policy.mark(marked) : marked;
    const final = this.gone ? 'client_aborted' : status;
    // What counts toward a pool key's `tpm`: cache reads are left out, as Anthropic's limits leave them.
    if (response)
      round.lease?.used?.(response.usage.input + response.usage.cacheWrite + response.usage.output);
    round.observer.end({ status: final, httpStatus: round.httpStatus, response, error });
    // A pool key's own 429 says nothing of the provider: the pool rests that key (server/routing).
    const keyLimited = round.httpStatus === 429 && round.keyName !== null;
    this.deps.breakers.record(
      round.target.adapter.id,
      round.start.request.model,
      this.gone || keyLimited ? undefined : healthy,
      round.probe,
    );
    return this.deps.recorder.finish(round.start, {
      status: final,
      httpStatus: round.httpStatus,
      streamed: round.streamed,
      response,
      error,
      upstreamRequestId: round.upstreamRequestId,
      endedAt: round.endedAt,
      attempts: round.attempts,
      keyName: round.keyName,
    });
  }
}

/** One round, relayed as it comes: every request without a strategy of its own. */
export const singleRound: RoundStrategy = {
  async run(x) {
    const res = await x.send(x.first);
    if (res) await x.read(x.first, res, { kind: 'relay' });
  },
};

/**
 * Chooses a request's strategy once its first round is admitted: a promise only when it must wait
 * (tool injection opening its MCP session).
 */
export type StrategyFor = (x: Exchange) => RoundStrategy | undefined | Promise<RoundStrategy | undefined>;

/**
 * Runs an exchange: the first round's admission, then the strategy's rounds. An unexpected
 * failure ends the client's response with `internal_error` in the provider's shape, never a hang.
 */
export async function runExchange(x: Exchange, strategyFor?: StrategyFor): Promise<void> {
  try {
    // Each awaited only when it is a promise: most requests are admitted, and have their
    // strategy, at once.
    const admitted = x.admit(x.first);
    if (!(admitted instanceof Promise ? await admitted : admitted)) return;
    const chosen = strategyFor?.(x);
    const strategy = (chosen instanceof Promise ? await chosen : chosen) ?? singleRound;
    await strategy.run(x);
  } catch (err) {
    x.req.log.error({ err }, 'exchange failed');
    x.fail(isBridgeError(err) ? err : new BridgeError('internal_error', undefined, { cause: err }));
  } finally {
    x.release();
  }
}
