import { randomUUID } from 'node:crypto';
import { totalTokens } from '../../shared/usage';
import type { InterceptionStart, PriceAs } from '../core/facts';
import { ESTIMATE_BYTES_PER_TOKEN } from '../core/inline-media';
import type { Principal } from '../core/principal';
import { BridgeError, isBridgeError } from '../errors';
import type { Metrics } from '../metrics';
import type { NewInterception } from '../store/types';
import type { Budgets } from './budgets';
import type { ModelPolicies } from './model-policy';
import type { PriceBook } from './prices';
import type { RateLimiter } from './rate-limits';

/**
 * Where a routed request may be served (docs/routing.md): a target's instance and the model it is
 * recorded and priced as there, which is what a request sent straight to it would be judged by.
 */
export interface ServedAs {
  readonly provider: string;
  readonly model: string | null;
  /** Where it is priced from when not the model's entry (a Bedrock profile's). */
  readonly priceAs?: PriceAs;
}

/**
 * The checks a model request passes before it leaves the bridge (model policy, rate limits,
 * budgets) and the bookkeeping when it ends. Shared proxy code calls `admit` and the recorder
 * calls `settle`; neither knows which rules exist.
 */
export class Governance {
  constructor(
    private readonly policies: ModelPolicies,
    private readonly limiter: RateLimiter,
    private readonly budgets: Budgets,
    private readonly prices: PriceBook,
    private readonly metrics: Metrics,
    private readonly defaultMaxOutputTokens: number,
    /** The least reserved for a request whose cost its body does not bound (SpendConfig.requestFloorUsd). */
    private readonly requestFloorUsd = 0,
    /** SpendConfig.unpricedModels. */
    private readonly unpriced: 'allow' | 'block' = 'allow',
  ) {}

  /**
   * An upper-leaning guess of what the request can cost: its body as input (priced as a cache
   * write where that costs more than plain input), its output cap as output (as images or audio,
   * for a model that prices them above its text).
   */
  estimateUsd(start: InterceptionStart, bodyBytes: number, targets?: readonly ServedAs[]): number {
    // A routed request is served by one of its targets, each at its own price: the dearest bounds it.
    if (targets && targets.length > 0)
      return Math.max(...targets.map((t) => this.estimateAt(start, bodyBytes, t)));
    return this.estimateAt(start, bodyBytes, {
      provider: start.provider,
      model: start.request.model,
      ...(start.request.priceAs ? { priceAs: start.request.priceAs } : {}),
    });
  }

  private estimateAt(start: InterceptionStart, bodyBytes: number, at: ServedAs): number {
    const tokens = Math.ceil(bodyBytes / ESTIMATE_BYTES_PER_TOKEN);
    const output =
      start.request.maxOutputTokens ?? this.defaultMaxOutputTokens * (start.request.answers ?? 1);
    let priced = true;
    // A model whose images or audio cost more than its text may spend the whole cap on them: 20
    // image requests at once, each reserved as text (a twelfth of their cost), overran a budget 7×.
    const dear = this.prices.dearOutput(at.provider, at.model);
    const price = (input: number, cacheWrite: number): number => {
      const cost = this.prices.cost(
        at.provider,
        at.model,
        { input, output, cacheRead: 0, cacheWrite, reasoning: 0, ...(dear ? { [dear]: output } : {}) },
        undefined,
        at.priceAs,
      );
      if (cost === null) priced = false;
      return cost ?? 0;
    };
    const estimate = Math.max(price(tokens, 0), price(0, tokens));
    // No model named: the provider picks one (a stored prompt's), so nothing prices the body. A name
    // the price table does not know (a deployment's, an alias) is no bound either: the answer may
    // name a priced model, and the request is charged at that model's price.
    const unbounded =
      !priced ||
      (start.request.inputBeyondBody?.length ?? 0) > 0 ||
      start.request.maxOutputTokens === null ||
      start.request.model === null;
    return unbounded ? Math.max(estimate, this.requestFloorUsd) : estimate;
  }

  /**
   * The targets of a routed request it may use: those a request sent straight to them would be
   * admitted at (the team's model policy on the model the target serves and, with
   * AIBRIDGE_UNPRICED_MODELS=block, its price). A route must not be a way around a policy: an
   * org-wide route `best` → a model a team is denied serves that team only through targets it may
   * use. Throws the first target's refusal when none is left.
   */
  routeTargets<T>(start: InterceptionStart, targets: readonly T[], servedAs: (t: T) => ServedAs): T[] {
    let first: unknown;
    const out = targets.filter((t) => {
      try {
        this.checkServed(start, servedAs(t));
        return true;
      } catch (err) {
        first ??= err;
        return false;
      }
    });
    if (out.length === 0 && first !== undefined) this.refused(first);
    return out;
  }

  private checkServed(start: InterceptionStart, at: ServedAs): void {
    this.policies.check(start.principal.user.team, at.model);
    if (this.unpriced === 'block') this.checkPriced(start, at);
  }

  /**
   * Counts the request against its user's and key's rate limits (before any other refusal:
   * admission.ts), holding in their `tpm` windows the tokens it may use while it runs: its body's,
   * and its output cap, as the providers count their own limits. `hold` false: a later round of an
   * exchange already admitted (tool injection), admitted before the round it follows is recorded:
   * judged with holds, that round's own hold refused the exchange halfway, its paid rounds lost to
   * the client; such a round holds nothing and is judged on the tokens of requests that ended.
   */
  count(start: InterceptionStart, bodyBytes = 0, hold = true): void {
    this.counted(start.id, start.principal, hold ? this.estimateTokens(start, bodyBytes) : 0, !hold);
  }

  private estimateTokens(start: InterceptionStart, bodyBytes: number): number {
    const output =
      start.request.maxOutputTokens ?? this.defaultMaxOutputTokens * (start.request.answers ?? 1);
    return Math.ceil(bodyBytes / ESTIMATE_BYTES_PER_TOKEN) + output;
  }

  /**
   * Counts a passthrough (a token count, a model list, a stored response read) against the caller's
   * rate limits: a request as any other, with no tokens to settle. It reaches the provider with the
   * organisation's key, so uncounted it could be sent without limit.
   */
  countUnmetered(principal: Principal): void {
    const id = `pt_${randomUUID()}`;
    this.counted(id, principal);
    this.limiter.settle(id, 0);
  }

  /** The limiter's admission of one request, a refusal counted in the metrics. */
  private counted(id: string, principal: Principal, estimate = 0, continuing = false): void {
    try {
      this.limiter.admit(id, principal, estimate, continuing);
    } catch (err) {
      this.refused(err);
    }
  }

  /**
   * Throws the refusal (`model_denied`, `model_unpriced`, `budget_exceeded`) or admits the request;
   * a promise only when a budget applies (its reservation may ask the store). `targets`: a routed
   * request's targets, already narrowed by `routeTargets`; the name it asked for is still judged by
   * the policy, and its price is theirs. Rate limits were counted before (`count`).
   */
  admit(start: InterceptionStart, bodyBytes: number, targets?: readonly ServedAs[]): void | Promise<void> {
    const { user } = start.principal;
    try {
      // A routed request's name is judged by the policy only: its targets were judged as served.
      if (targets) this.policies.check(user.team, start.request.model);
      else this.checkServed(start, { provider: start.provider, model: start.request.model });
      // The budget check asks the store (a database round trip when replicas share one).
      const reserving = this.budgets.reserve(
        start.id,
        { id: user.id, team: user.team, sessionId: start.request.sessionId },
        () => this.estimateUsd(start, bodyBytes, targets),
      );
      return reserving?.catch((err: unknown) => this.refused(err));
    } catch (err) {
      this.refused(err);
    }
  }

  /**
   * With AIBRIDGE_UNPRICED_MODELS=block, a model the price table and the admin's prices do not
   * know is refused: its spend would go uncounted by every budget. A request the user pays for with
   * their own credential is not the organisation's spend, and is served.
   */
  private checkPriced(start: InterceptionStart, at: ServedAs): void {
    const model = at.model;
    if (start.billedTo === 'user') return;
    // No model named (a Responses request whose stored `prompt` picks it): its price is unknown
    // until the answer, which would go uncounted by every budget.
    if (model === null)
      throw new BridgeError(
        'model_unpriced',
        'The request names no model, so its price is not known before it runs, and this bridge serves only priced models: name the model in the request.',
      );
    const probe = { input: 1, output: 1, cacheRead: 0, cacheWrite: 0, reasoning: 0 };
    if (this.prices.cost(at.provider, model, probe) !== null) return;
    throw new BridgeError(
      'model_unpriced',
      `The model "${model}" has no price, and this bridge serves only priced models: an admin can price it (PUT /api/v1/prices/${encodeURIComponent(model)}), or use a priced model.`,
    );
  }

  private refused(err: unknown): never {
    if (isBridgeError(err)) this.metrics.refusals.inc({ reason: (err as BridgeError).code });
    throw err;
  }

  settle(rec: NewInterception): void {
    this.limiter.settle(rec.id, totalTokens(rec.usage));
    this.budgets.settle(rec);
  }
}
