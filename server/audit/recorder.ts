import type { FastifyBaseLogger } from 'fastify';
import type { ApiName, Interception, InterceptionError, InterceptionStatus } from '../../shared/interception';
import { emptyUsage, totalTokens } from '../../shared/usage';
import type { Principal } from '../identity/auth';
import type { Metrics } from '../metrics';
import type { RequestFacts, ResponseFacts } from '../providers/types';
import type { PriceBook } from '../spend/prices';
import type { NewInterception, Store } from '../store/types';

/** What is known of an interception when its request is accepted. */
export interface InterceptionStart {
  id: string;
  principal: Principal;
  provider: string;
  api: ApiName;
  client: string;
  request: RequestFacts;
  startedAt: Date;
  /** Fastify's id for the HTTP request, to join the log line with others. */
  requestId?: string;
}

export interface InterceptionEnd {
  status: InterceptionStatus;
  httpStatus: number;
  streamed: boolean;
  response: ResponseFacts | null;
  error: InterceptionError | null;
  upstreamRequestId: string | null;
  endedAt: Date;
}

/**
 * Turns the proxy's view of a request into one interception record and hands it to the store.
 * The proxy never waits on it: a slow disk must not slow a response.
 */
export class Recorder {
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly listeners: ((rec: Interception) => void)[] = [];
  private readonly finishListeners: ((rec: NewInterception) => void)[] = [];

  constructor(
    private readonly store: Store,
    private readonly log: FastifyBaseLogger,
    private readonly prices: PriceBook,
    private readonly metrics: Metrics,
  ) {}

  /** Called once the record is durable. */
  onRecorded(listener: (rec: Interception) => void): void {
    this.listeners.push(listener);
  }

  /** Called synchronously as the interception ends, before the store: spend ledgers must not lag the proxy. */
  onFinished(listener: (rec: NewInterception) => void): void {
    this.finishListeners.push(listener);
  }

  finish(start: InterceptionStart, end: InterceptionEnd): void {
    const { user, key } = start.principal;
    const model = start.request.model ?? end.response?.model ?? null;
    const usage = end.response?.usage ?? emptyUsage();
    // Nothing used costs nothing, whether or not the model's price is known.
    const price =
      totalTokens(usage) === 0
        ? { costUsd: 0, priceKnown: true }
        : this.prices.price(start.provider, model, usage, start.startedAt);
    if (!price.priceKnown)
      this.metrics.unknownPrice.inc({ provider: start.provider, model: this.metrics.model(model) });
    const rec: NewInterception = {
      id: start.id,
      userId: user.id,
      userEmail: user.email,
      team: user.team,
      keyId: key.id,
      provider: start.provider,
      api: start.api,
      model,
      client: start.client,
      sessionId: start.request.sessionId,
      startedAt: start.startedAt.toISOString(),
      endedAt: end.endedAt.toISOString(),
      durationMs: end.endedAt.getTime() - start.startedAt.getTime(),
      status: end.status,
      httpStatus: end.httpStatus,
      streamed: end.streamed,
      usage,
      costUsd: price.costUsd,
      priceKnown: price.priceKnown,
      prompt: start.request.prompt,
      toolCalls: end.response?.toolCalls ?? [],
      error: end.error ?? end.response?.error ?? null,
      upstreamRequestId: end.upstreamRequestId,
    };
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
    const handedOver = performance.now();
    const p = this.store
      .appendInterception(rec)
      .then((stored) => {
        this.metrics.auditWrite.observe((performance.now() - handedOver) / 1000);
        for (const l of this.listeners) l(stored);
      })
      .catch((err: unknown) => {
        this.metrics.auditFailures.inc();
        this.log.error({ err, interceptionId: rec.id }, 'failed to store interception');
      })
      .finally(() => {
        this.inFlight.delete(p);
        this.metrics.auditQueue.set(this.inFlight.size);
      });
    this.inFlight.add(p);
    this.metrics.auditQueue.set(this.inFlight.size);
  }

  /** Resolves when every record handed over so far has been stored (or has failed). */
  async drain(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }
}
