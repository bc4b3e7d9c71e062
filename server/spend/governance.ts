import { totalTokens } from '../../shared/usage';
import type { InterceptionStart } from '../core/facts';
import { BridgeError, isBridgeError } from '../errors';
import type { Metrics } from '../metrics';
import type { NewInterception } from '../store/types';
import type { Budgets } from './budgets';
import type { ModelPolicies } from './model-policy';
import type { PriceBook } from './prices';
import type { RateLimiter } from './rate-limits';

/** Bytes of request body per input token assumed for a reservation: most text runs near 4. */
const BYTES_PER_TOKEN = 3;

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
   * write where that costs more than plain input), its output cap as output.
   */
  estimateUsd(start: InterceptionStart, bodyBytes: number): number {
    const tokens = Math.ceil(bodyBytes / BYTES_PER_TOKEN);
    const output =
      start.request.maxOutputTokens ?? this.defaultMaxOutputTokens * (start.request.answers ?? 1);
    const price = (input: number, cacheWrite: number): number =>
      this.prices.cost(start.provider, start.request.model, {
        input,
        output,
        cacheRead: 0,
        cacheWrite,
        reasoning: 0,
      }) ?? 0;
    const estimate = Math.max(price(tokens, 0), price(0, tokens));
    // No model named: the provider picks one (a stored prompt's), so nothing prices the body.
    const unbounded =
      (start.request.inputBeyondBody?.length ?? 0) > 0 ||
      start.request.maxOutputTokens === null ||
      start.request.model === null;
    return unbounded ? Math.max(estimate, this.requestFloorUsd) : estimate;
  }

  /**
   * Throws the refusal (`model_denied`, `rate_limited`, `budget_exceeded`) or admits the request;
   * a promise only when a budget applies (its reservation may ask the store).
   */
  admit(start: InterceptionStart, bodyBytes: number): void | Promise<void> {
    const { user } = start.principal;
    try {
      this.policies.check(user.team, start.request.model);
      if (this.unpriced === 'block') this.checkPriced(start);
      this.limiter.admit(start.id, start.principal);
      // The budget check asks the store (a database round trip when replicas share one).
      const reserving = this.budgets.reserve(
        start.id,
        { id: user.id, team: user.team, sessionId: start.request.sessionId },
        this.estimateUsd(start, bodyBytes),
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
  private checkPriced(start: InterceptionStart): void {
    const model = start.request.model;
    if (start.billedTo === 'user') return;
    // No model named (a Responses request whose stored `prompt` picks it): its price is unknown
    // until the answer, which would go uncounted by every budget.
    if (model === null)
      throw new BridgeError(
        'model_unpriced',
        'The request names no model, so its price is not known before it runs, and this bridge serves only priced models: name the model in the request.',
      );
    const probe = { input: 1, output: 1, cacheRead: 0, cacheWrite: 0, reasoning: 0 };
    if (this.prices.cost(start.provider, model, probe) !== null) return;
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
