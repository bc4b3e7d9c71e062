import type { FastifyBaseLogger } from 'fastify';
import type { ErrorCode } from '../../shared/errors';
import type { InterceptionAttempt, InterceptionError, InterceptionStatus } from '../../shared/interception';
import { emptyUsage, totalTokens } from '../../shared/usage';
import { FifoTimes } from '../core/churn-free';
import { type InterceptionStart, ownableId, type PrefixAt, type ResponseFacts } from '../core/facts';
import { isoTime } from '../core/iso-time';
import type { Metrics } from '../metrics';
import { OUTPUT_LIMIT } from '../providers/common';
import type { PriceBook, PriceResult } from '../spend/prices';
import { isRecordRefusal } from '../store/record-refusal';
import type { NewInterception, Store } from '../store/types';
import { capJson } from './cap-json';
import { type Redaction, Redactor } from './redact';

export interface InterceptionEnd {
  status: InterceptionStatus;
  httpStatus: number;
  streamed: boolean;
  response: ResponseFacts | null;
  error: InterceptionError | null;
  upstreamRequestId: string | null;
  endedAt: Date;
  /** Attempts that failed before this one (failover); absent or empty: none. */
  attempts?: InterceptionAttempt[];
  /** The pool key that carried this attempt; null or absent: the instance's only credential. */
  keyName?: string | null;
}

/** Tool result text kept with capture `full`. */
const RESULT_LIMIT = 16 * 1024;
/**
 * Text past a cut that is redacted with what is kept: a secret across the cut is found whole (the
 * longest kinds, a JWT or a PEM key, run to a few KiB), not left as a prefix too short to find.
 */
const CUT_MARGIN = 8 * 1024;
/** The request's new messages kept with capture `full`, as JSON. */
const MESSAGES_LIMIT = 64 * 1024;
/**
 * An error's message as kept: a provider's reason fits many times over, and an upstream that
 * echoes the request in its errors (an OpenAI-compatible server's validation errors) cannot make
 * every free failed request a megabyte in the journal and in memory.
 */
const ERROR_LIMIT = 8 * 1024;

/**
 * Codes with which the bridge refuses a request before sending it to the provider. Such a record
 * keeps no conversation (capture `none`): nothing was sent, and redacting a prompt the bridge turned
 * away would let a refused member still spend the bridge's CPU on it.
 */
const REFUSED_BEFORE_UPSTREAM: ReadonlySet<string> = new Set<ErrorCode>([
  'model_denied',
  'budget_exceeded',
  'rate_limited',
  'circuit_open',
  'provider_not_configured',
  'audit_unavailable',
  'store_unavailable',
  'server_busy',
  'response_not_found',
  'conversation_not_found',
  'item_not_found',
]);

/** Whether the interception ended with the bridge's refusal, before the provider saw anything. */
function refused(end: InterceptionEnd): boolean {
  return (
    end.response === null &&
    end.upstreamRequestId === null &&
    end.error !== null &&
    REFUSED_BEFORE_UPSTREAM.has(end.error.type)
  );
}

/**
 * The longest a record waits for its annotation (a store read, when the previous turn is not in
 * memory) before it is stored without: a slow database must not hold records back.
 */
const ANNOTATION_LIMIT_MS = 2000;

function ownedResponse(id: string | undefined): id is string {
  return id !== undefined && ownableId(id);
}

/** Log levels at which the per-interception `info` line is written. */
const LOGS_INFO: ReadonlySet<string> = new Set(['trace', 'debug', 'info']);

/**
 * A step a record passes before it is stored; `prefixAt`: the hash of its request's first k
 * messages. It answers at once (not a promise) when it has nothing to look up, which is nearly every
 * record: those go to the store without a timer and a promise chain each.
 */
export type Annotator = (
  rec: NewInterception,
  prefixAt: PrefixAt | undefined,
) => NewInterception | Promise<NewInterception>;

export interface RecorderOptions {
  /** When the store refuses writes: `closed` refuses new requests, `open` serves on and may drop records. */
  failMode: 'open' | 'closed';
  retryMs: number;
  /** Records kept for retry at most (open mode drops the oldest beyond it). */
  retryLimit: number;
}

/** Refusals of a record for what it holds before it is set aside (a retry each `retryMs`). */
const RETRIES_BEFORE_SET_ASIDE = 3;

/**
 * How long the oldest store write may wait before closed mode refuses new requests: the longest an
 * answer's end waits for its record (exchange.ts ACK_WAIT_MS).
 */
export const WRITE_STALL_MS = 2_000;

/** Ids of unrecorded requests named in the shutdown's error line, at most. */
const LOST_IDS_LOGGED = 1000;

/**
 * Turns the proxy's view of a request into one interception record and hands it to the store.
 * The proxy never waits on it: a slow disk must not slow a response.
 */
export class Recorder {
  /** Records waiting for their annotation before they are handed to the store (rare). */
  private readonly inFlight = new Set<Promise<unknown>>();
  /**
   * The store writes under way, by when each was handed over, oldest first. Not a Set and a Map
   * of the promises: adding and deleting one each on every request churned their tables in the old
   * generation (core/churn-free.ts).
   */
  private readonly writes = new FifoTimes<Promise<void>>();
  private readonly finishListeners: ((rec: NewInterception) => void)[] = [];
  private readonly responseListeners: ((userId: string, responseId: string, items?: string[]) => void)[] = [];
  private readonly retryQueue: NewInterception[] = [];
  /** Records the store still refused when `drain` gave up (the bridge stopping): `aibridge serve` exits 1. */
  unrecordedAtClose = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private retrying: Promise<void> | undefined;
  /** Refusals of the records waiting, for what they hold, by id (setAside). */
  private readonly refusals = new Map<string, number>();
  private droppedCount = 0;
  /** Runs on each record before it is stored (cache-break detection); may read the store. */
  private annotator: Annotator | undefined;
  /** Resolves once every record finished so far has been handed to the store (annotated or not). */
  private handOff: Promise<void> = Promise.resolve();
  /** Records whose annotation is still awaited: while any is, later records queue behind them. */
  private annotating = 0;

  constructor(
    private readonly store: Store,
    private readonly log: FastifyBaseLogger,
    private readonly prices: PriceBook,
    private readonly metrics: Metrics,
    private readonly opts: RecorderOptions = { failMode: 'closed', retryMs: 1000, retryLimit: 10_000 },
    /** The one redactor: the proxy runs the model name and session id through it too. */
    readonly redactor: Redactor = new Redactor(),
  ) {
    metrics.auditQueueSource = () => this.queued();
  }

  /** Sets the step each record passes before the store; the record is stored as it returns it (or as it was, if it fails). */
  annotateWith(annotator: Annotator): void {
    this.annotator = annotator;
  }

  /** Called synchronously as the interception ends, before the store: spend ledgers must not lag the proxy. */
  onFinished(listener: (rec: NewInterception) => void): void {
    this.finishListeners.push(listener);
  }

  /** Called as a stream names the response it is answering with, long before it finishes. */
  onResponseNamed(listener: (userId: string, responseId: string, items?: string[]) => void): void {
    this.responseListeners.push(listener);
  }

  /**
   * The provider named the stored response a stream is answering with (Responses'
   * `response.created`): it is the caller's from now, not only once the interception finishes. A
   * client may continue it as soon as `response.completed` reaches it, before the provider closes
   * the stream and the record is finished. Named again with `items` once the stream completes it
   * (its stored output items), which the client may name in that follow-up.
   */
  responseNamed(start: InterceptionStart, responseId: string, items?: string[]): void {
    if (!ownedResponse(responseId)) return;
    for (const l of this.responseListeners) l(start.principal.user.id, responseId, items);
  }

  /**
   * The price of an answer as the tier it says served it is billed (PRIORITY_TIER_FACTOR,
   * FLEX_TIER_FACTOR): only the price data's standard prices are scaled, not an admin's or an
   * instance's own.
   */
  private atServedTier(
    provider: string,
    model: string | null,
    price: PriceResult,
    tier: string | undefined,
  ): PriceResult {
    if (tier === undefined || price.costUsd === null || price.costSource !== undefined) return price;
    if (tier === 'priority') {
      if (this.prices.overridden(provider, model)) return price;
      return { ...price, costUsd: price.costUsd * PRIORITY_TIER_FACTOR, costSource: 'priority-tier' };
    }
    if (tier === 'flex' && this.prices.priceIdOf(provider) === 'openai') {
      if (this.prices.overridden(provider, model)) return price;
      return { ...price, costUsd: price.costUsd * FLEX_TIER_FACTOR, costSource: 'flex-tier' };
    }
    return price;
  }

  /**
   * Records an interception. The promise resolves once the store has the record (or it waits in
   * the retry queue after a refusal); it never rejects. The proxy may hold the end of the client's
   * response on it (AIBRIDGE_AUDIT_ACK=stored), so an answer a client saw end is never lost to a
   * replica killed a moment later.
   */
  finish(start: InterceptionStart, end: InterceptionEnd): Promise<void> {
    const { user, key } = start.principal;
    const model = start.request.model ?? end.response?.model ?? null;
    const usage = end.response?.usage ?? emptyUsage();
    // Nothing used costs nothing, whether or not the model's price is known.
    const price = this.atServedTier(
      start.provider,
      model,
      totalTokens(usage) === 0
        ? { costUsd: 0, priceKnown: true }
        : this.prices.price(
            start.provider,
            model,
            usage,
            start.startedAt,
            end.response?.model ?? null,
            start.request.priceAs,
          ),
      end.response?.serviceTier,
    );
    if (!price.priceKnown)
      this.metrics.unknownPrice.inc({ provider: start.provider, model: this.metrics.model(model) });
    // Secrets go before anything is stored, logged or published.
    const redactions: Redaction[] = start.request.redactions ? [...start.request.redactions] : [];
    const capture = refused(end) ? 'none' : (start.capture ?? 'prompt');
    const rec: NewInterception = {
      id: start.id,
      userId: user.id,
      userEmail: user.email,
      team: user.team,
      keyId: key.id,
      provider: start.provider,
      api: start.api,
      model,
      ...(start.alias ? { alias: start.alias } : {}),
      client: start.client,
      sessionId: start.request.sessionId,
      startedAt: isoTime(start.startedAt.getTime()),
      endedAt: isoTime(end.endedAt.getTime()),
      durationMs: end.endedAt.getTime() - start.startedAt.getTime(),
      status: end.status,
      httpStatus: end.httpStatus,
      streamed: end.streamed,
      usage,
      costUsd: price.costUsd,
      priceKnown: price.priceKnown,
      ...(price.costSource ? { costSource: price.costSource } : {}),
      ...(end.response?.usageEstimated ? { usageEstimated: true as const } : {}),
      ...(start.billedTo === 'user' ? { billedTo: 'user' as const } : {}),
      prompt:
        capture === 'none' || start.request.prompt === null
          ? null
          : this.redactor.text(start.request.prompt, 'prompt', redactions),
      toolCalls: (end.response?.toolCalls ?? []).map((c, i) => ({
        ...c,
        input: capture === 'none' ? null : this.redactor.value(c.input, `toolCalls[${i}].input`, redactions),
      })),
      capture,
      toolResults: start.request.toolResults.map((r, i) => ({
        callId: r.callId,
        isError: r.isError,
        content:
          capture === 'full'
            ? this.redactor
                .text(r.content.slice(0, RESULT_LIMIT + CUT_MARGIN), `toolResults[${i}].content`, redactions)
                .slice(0, RESULT_LIMIT)
            : null,
        contentLength: r.content.length,
      })),
      ...(capture === 'full'
        ? {
            // Redacted before the cap: a cap keeps the start of the JSON text, where a line's
            // start is an escaped `\n` and `.env` assignments would no longer be found.
            messages: capJson(
              this.redactor.value(start.request.newMessages, 'messages', redactions),
              MESSAGES_LIMIT,
            ),
            output: end.response?.output
              ? {
                  // Gathered past the limit (appendCapped): redacted, then cut.
                  text: this.redactor
                    .text(end.response.output.text, 'output.text', redactions)
                    .slice(0, OUTPUT_LIMIT),
                  thinking: this.redactor
                    .text(end.response.output.thinking, 'output.thinking', redactions)
                    .slice(0, OUTPUT_LIMIT),
                }
              : null,
          }
        : {}),
      // A provider's error may echo what the member sent (a key pasted as the model name).
      error: this.redactedError(end.error ?? end.response?.error ?? null, redactions),
      upstreamRequestId: end.upstreamRequestId,
      ...(ownedResponse(end.response?.responseId) ? { responseId: end.response!.responseId! } : {}),
      ...(end.response?.responseItems ? { responseItems: end.response.responseItems } : {}),
      redactions,
      ...(start.request.cache ? { cacheKey: start.request.cache.fingerprint } : {}),
      // Present only when there is something to say, so a record without failover is as before.
      ...(end.attempts && end.attempts.length > 0
        ? {
            attempts: end.attempts.map((a, i) => {
              // A failed target's message may echo what the member sent, as the record's error may.
              const error = this.redactedError(a.error, redactions, `attempts[${i}].error`);
              return error === a.error ? a : { ...a, error };
            }),
          }
        : {}),
      ...(end.keyName ? { keyName: end.keyName } : {}),
    };
    // The line's object is built only when it is logged (AIBRIDGE_LOG_LEVEL info or finer).
    if (LOGS_INFO.has(this.log.level))
      this.log.info(
        {
          reqId: start.requestId,
          interceptionId: rec.id,
          userId: rec.userId,
          provider: rec.provider,
          api: rec.api,
          model: rec.model,
          client: rec.client,
          status: rec.status,
          httpStatus: rec.httpStatus,
          durationMs: rec.durationMs,
          usage: rec.usage,
          costUsd: rec.costUsd,
          ...(rec.billedTo ? { billedTo: rec.billedTo } : {}),
        },
        'interception',
      );
    this.metrics.interception(rec);
    for (const l of this.finishListeners) {
      try {
        l(rec);
      } catch (err) {
        this.log.error({ err, interceptionId: rec.id }, 'interception listener failed');
      }
    }
    const annotate = this.annotator;
    if (!annotate) return this.persist(rec);
    let now: NewInterception | Promise<NewInterception>;
    try {
      now = annotate(rec, start.request.cache?.prefixAt);
    } catch (err) {
      this.log.error({ err, interceptionId: rec.id }, 'record annotation failed; storing it as it is');
      now = rec;
    }
    // Nothing queued before it: an answer at once goes straight to the store, in finishing order.
    if (!(now instanceof Promise) && this.annotating === 0) return this.persist(now);
    const annotated = now instanceof Promise ? this.annotated(now, rec) : Promise.resolve(now);
    // Handed to the store in the order the interceptions finished, however long each annotation took.
    this.annotating += 1;
    const ready = this.handOff.then(() => annotated);
    this.handOff = ready.then(() => undefined);
    const p = ready
      .then((r) => {
        // In the same turn as the hand-off, so no record finished at once can slip in between.
        this.annotating -= 1;
        return this.persist(r);
      })
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
    return p;
  }

  /** The error as kept: its message through the redactor, the record's other text's way. */
  private redactedError(
    error: InterceptionError | null,
    found: Redaction[],
    field = 'error',
  ): InterceptionError | null {
    if (error === null) return null;
    // Redacted before the cut, with a margin, as the other capped text is.
    const gathered = error.message.slice(0, ERROR_LIMIT + CUT_MARGIN);
    const message = this.redactor.text(gathered, field, found).slice(0, ERROR_LIMIT);
    return message === error.message ? error : { ...error, message };
  }

  /** The annotated record; the record as it is if annotation fails or takes longer than ANNOTATION_LIMIT_MS. */
  private annotated(annotation: Promise<NewInterception>, rec: NewInterception): Promise<NewInterception> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<NewInterception>((resolve) => {
      timer = setTimeout(() => {
        this.log.warn({ interceptionId: rec.id }, 'record annotation is slow; storing the record as it is');
        resolve(rec);
      }, ANNOTATION_LIMIT_MS);
      timer.unref();
    });
    const done = annotation.catch((err: unknown) => {
      this.log.error({ err, interceptionId: rec.id }, 'record annotation failed; storing it as it is');
      return rec;
    });
    return Promise.race([done, late]).finally(() => clearTimeout(timer));
  }

  private persist(rec: NewInterception): Promise<void> {
    if (this.retryQueue.length === 0) return this.write(rec);
    this.enqueueRetry(rec);
    return Promise.resolve();
  }

  private write(rec: NewInterception): Promise<void> {
    const handedOver = performance.now();
    // One promise per record, not a then/catch/finally chain of three: this runs on every request.
    const p: Promise<void> = this.store.appendInterception(rec).then(
      () => {
        this.metrics.auditWrite.observe({}, (performance.now() - handedOver) / 1000);
        this.writes.done(entry);
      },
      (err: unknown) => {
        this.metrics.auditFailures.inc();
        this.log.error({ err, interceptionId: rec.id }, 'failed to store interception; will retry');
        this.enqueueRetry(rec);
        this.writes.done(entry);
      },
    );
    const entry = this.writes.add(handedOver, p);
    return p;
  }

  /** Records handed over and not yet stored: waiting for annotation, for the store, or to be retried. */
  private queued(): number {
    return this.inFlight.size + this.writes.size + this.retryQueue.length;
  }

  /**
   * A record the store refused waits here, in order, and is retried until the store takes it. In
   * `open` mode the queue is bounded and the oldest record is dropped (counted) when it is full;
   * in `closed` mode new requests are refused while anything waits, so the queue cannot grow.
   */
  private enqueueRetry(rec: NewInterception): void {
    if (this.retryQueue.length >= this.opts.retryLimit) {
      const dropped = this.retryQueue.shift();
      if (dropped) this.refusals.delete(dropped.id);
      this.droppedCount += 1;
      this.metrics.auditDropped.inc();
      this.log.error({ interceptionId: dropped?.id }, 'audit retry queue full: dropped the oldest record');
    }
    this.retryQueue.push(rec);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.retryQueue.length === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.retry();
    }, this.opts.retryMs);
    this.retryTimer.unref();
  }

  /**
   * Retries the queue from its head, one record at a time. One loop at most: a second, started by
   * the timer while the first waited on the store, would store the head twice and then take away a
   * record it never wrote.
   */
  private retry(): Promise<void> {
    this.retrying ??= this.retryLoop().finally(() => {
      this.retrying = undefined;
    });
    return this.retrying;
  }

  private async retryLoop(): Promise<void> {
    while (this.retryQueue.length > 0) {
      const rec = this.retryQueue[0]!;
      try {
        await this.store.appendInterception(rec);
        this.refusals.delete(rec.id);
        // This record only: with the queue full, the oldest (this one) may have been dropped meanwhile.
        const at = this.retryQueue.indexOf(rec);
        if (at >= 0) this.retryQueue.splice(at, 1);
      } catch (err) {
        if (this.setAside(rec, err)) continue;
        // Logged on every attempt (one per retry interval): an outage stays visible until it ends.
        this.log.warn(
          { err, interceptionId: rec.id, queued: this.retryQueue.length },
          'audit retry failed; will retry',
        );
        this.scheduleRetry();
        return;
      }
    }
    this.log.info('audit writes succeed again');
  }

  /**
   * A record the store refuses for what it holds (isRecordRefusal), not for an outage: retried for
   * ever it would hold every record behind it, and in `closed` mode every request of the replica.
   * After RETRIES_BEFORE_SET_ASIDE such refusals it is set aside: dropped, counted and logged by id
   * (its `interception` log line has its usage and cost).
   */
  private setAside(rec: NewInterception, err: unknown): boolean {
    if (!isRecordRefusal(err)) return false;
    const tries = (this.refusals.get(rec.id) ?? 0) + 1;
    this.refusals.set(rec.id, tries);
    if (tries < RETRIES_BEFORE_SET_ASIDE) return false;
    this.refusals.delete(rec.id);
    const at = this.retryQueue.indexOf(rec);
    if (at >= 0) this.retryQueue.splice(at, 1);
    this.droppedCount += 1;
    this.metrics.auditDropped.inc();
    this.log.error(
      { err, interceptionId: rec.id, attempts: tries },
      'audit record refused by the store for what it holds, set aside: the records behind it are stored',
    );
    return true;
  }

  /** Whether new requests may be served: in `closed` mode, not while records wait for the store. */
  accepting(): boolean {
    if (this.opts.failMode === 'open') return true;
    if (this.retryQueue.length > 0) return false;
    // A store that neither takes nor refuses (a database paused, a lock held on the chain's head)
    // fails nothing: the oldest write still waiting says so. Past the longest an answer's end
    // waits for its record (AIBRIDGE_AUDIT_ACK=stored), new requests wait for the store as they
    // do after a refusal; before, they were served for as long as it hung.
    const oldest = this.writes.oldest()?.at;
    return oldest === undefined || performance.now() - oldest <= WRITE_STALL_MS;
  }

  auditState(): { failMode: 'open' | 'closed'; degraded: boolean; queued: number; dropped: number } {
    return {
      failMode: this.opts.failMode,
      degraded: this.retryQueue.length > 0,
      queued: this.queued(),
      dropped: this.droppedCount,
    };
  }

  /** Resolves when every record handed over so far has been stored, or (after one last try) is given up. */
  async drain(): Promise<void> {
    await Promise.all([...this.inFlight, ...this.writes.values()]);
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    // A loop the timer started is waited for: the store must not close under it.
    if (this.retrying) await this.retrying;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    if (this.retryQueue.length > 0) await this.retry();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.unrecordedAtClose = this.retryQueue.length;
    if (this.retryQueue.length > 0) {
      // Which requests went unrecorded, for the operator to find them in the access log: the
      // records themselves (prompts, however redacted) do not go to the log.
      this.log.error(
        {
          records: this.retryQueue.length,
          ids: this.retryQueue.slice(0, LOST_IDS_LOGGED).map((r) => r.id),
          users: [...new Set(this.retryQueue.map((r) => r.userId))].slice(0, LOST_IDS_LOGGED),
        },
        'shutting down with audit records the store refused',
      );
    }
  }
}

/**
 * OpenAI's priority tier costs 1.7 to 2 times the standard prices, the only ones the price data
 * has. A request that asks for it is refused, but a project whose default tier is priority serves
 * requests that name no tier (or `auto`) at it, and the answer says so (`service_tier`): billed at
 * the standard price, each was charged at about half its cost. Such an answer is billed at twice
 * the standard price (the upper bound), recorded with `costSource: "priority-tier"`. Not where an
 * admin priced the model (their price is what is paid), and not Scale Tier (prepaid capacity).
 */
export const PRIORITY_TIER_FACTOR = 2;

/**
 * OpenAI's Flex processing (`service_tier: "flex"`, which Codex's `service_tier` setting sends) is
 * billed at Batch API rates, half the standard prices for input, cached input and output alike.
 * Billed at the standard price, every such answer counted twice its cost against budgets. Only on
 * OpenAI's own family: other APIs that answer `flex` (Groq's, through an OpenAI-compatible
 * instance) price it otherwise, and Azure's price data is Azure's.
 */
export const FLEX_TIER_FACTOR = 0.5;
