/** How one provider+model pair is doing, as /healthz shows it. */
export interface BreakerState {
  provider: string;
  model: string;
  state: 'closed' | 'open' | 'half-open';
  consecutiveFailures: number;
  /** When an open breaker lets its next probe through (ISO 8601), else null. */
  retryAt: string | null;
}

export interface BreakerOptions {
  /** Consecutive failures that open the breaker; 0 turns breakers off. */
  threshold: number;
  cooldownMs: number;
}

export type Admission = { admitted: true; probe: boolean } | { admitted: false; retryAfterMs: number };

interface Entry {
  provider: string;
  model: string;
  failures: number;
  openedAt: number | null;
  probing: boolean;
}

/**
 * Breakers kept at most. Model names are the client's choice: only breakers that have seen a
 * failure are kept (a healthy one is the same as none), and beyond this many the least recently
 * used is forgotten, so neither memory nor the /healthz snapshot grows with the names members send.
 */
export const MAX_BREAKERS = 256;

/**
 * One breaker per provider and model. After `threshold` consecutive failures (5xx, 529,
 * unreachable, timeout; not a 429, isProviderFailure) it opens and refuses at once for `cooldownMs`; then it lets a single probe
 * through (half-open): success closes it, failure opens it again.
 */
export class CircuitBreakers {
  /** In least recently used order: a touched entry moves to the end. */
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly opts: BreakerOptions,
    private readonly now: () => number = Date.now,
  ) {}

  private static key(provider: string, model: string): string {
    return `${provider}\u0000${model}`;
  }

  private existing(provider: string, model: string): Entry | undefined {
    const key = CircuitBreakers.key(provider, model);
    const e = this.entries.get(key);
    if (e) {
      this.entries.delete(key);
      this.entries.set(key, e);
    }
    return e;
  }

  private entry(provider: string, model: string): Entry {
    let e = this.existing(provider, model);
    if (!e) {
      e = { provider, model, failures: 0, openedAt: null, probing: false };
      this.entries.set(CircuitBreakers.key(provider, model), e);
      if (this.entries.size > MAX_BREAKERS) this.entries.delete(this.entries.keys().next().value!);
    }
    return e;
  }

  /** How many breakers are kept. */
  get size(): number {
    return this.entries.size;
  }

  admit(provider: string, model: string | null): Admission {
    if (this.opts.threshold === 0) return { admitted: true, probe: false };
    const e = this.existing(provider, model ?? '*');
    if (!e || e.openedAt === null) return { admitted: true, probe: false };
    const t = this.now();
    // Opened "in the future": the wall clock stepped back since. The cooldown counts from now, not
    // from a time the clock will reach only after the step (a model blocked for days).
    if (e.openedAt > t) e.openedAt = t;
    const retryAt = e.openedAt + this.opts.cooldownMs;
    if (t < retryAt) return { admitted: false, retryAfterMs: retryAt - t };
    if (e.probing) return { admitted: false, retryAfterMs: this.opts.cooldownMs };
    e.probing = true;
    return { admitted: true, probe: true };
  }

  /** The outcome of an admitted request; `undefined` (the client left) says nothing about the provider. */
  record(provider: string, model: string | null, healthy: boolean | undefined, probe: boolean): void {
    if (this.opts.threshold === 0) return;
    if (healthy) {
      // Nearly always nothing to clear: no key to build for it.
      if (this.entries.size > 0) this.entries.delete(CircuitBreakers.key(provider, model ?? '*'));
      return;
    }
    const e =
      healthy === undefined ? this.existing(provider, model ?? '*') : this.entry(provider, model ?? '*');
    if (!e) return;
    if (probe) e.probing = false;
    if (healthy === undefined) return;
    e.failures += 1;
    if (probe || e.failures >= this.opts.threshold) e.openedAt = this.now();
  }

  snapshot(): BreakerState[] {
    const t = this.now();
    return [...this.entries.values()]
      .filter((e) => e.failures > 0 || e.openedAt !== null)
      .map((e) => {
        const retryAt = e.openedAt === null ? null : e.openedAt + this.opts.cooldownMs;
        const state = retryAt === null ? 'closed' : t < retryAt ? 'open' : 'half-open';
        return {
          provider: e.provider,
          model: e.model,
          state,
          consecutiveFailures: e.failures,
          retryAt: retryAt === null ? null : new Date(retryAt).toISOString(),
        };
      });
  }
}

/**
 * Whether an upstream status says the provider is in trouble (rather than the request being wrong).
 * Not a 429: the provider is up and answering, and one member can draw 429s at will (a request
 * over the whole per-minute token limit, which Anthropic says in the words of any rate limit), so
 * counted they opened the model's breaker for everyone. A 429 is relayed with its `retry-after`,
 * fails over to a routed request's next target, and cools a pool key.
 */
export function isProviderFailure(status: number): boolean {
  return status >= 500;
}

/**
 * Error types a provider names in a stream's first event for a fault of the request itself, what
 * an HTTP answer says with 400, 403, 404 or 413 (Anthropic's and OpenAI's types, Google's status
 * names, Bedrock's in-stream `validationException` as the bridge names it): like those answers,
 * the client's to see, not a reason to try another target or to count against this one. A member
 * who sends requests the provider refuses would otherwise open a breaker for everyone.
 */
const REQUEST_FAULTS: ReadonlySet<string> = new Set([
  'invalid_request_error',
  'not_found_error',
  'permission_error',
  'request_too_large',
  'invalid_prompt',
  'context_length_exceeded',
  'INVALID_ARGUMENT',
  'FAILED_PRECONDITION',
  'OUT_OF_RANGE',
  'NOT_FOUND',
  'PERMISSION_DENIED',
  // OpenAI Responses' `response.failed` codes for an input it cannot use (an image URL it cannot
  // fetch, a file that is no image): the request's, as a 400 would be.
  'invalid_image',
  'invalid_image_format',
  'invalid_base64_image',
  'invalid_image_url',
  'image_too_large',
  'image_too_small',
  'image_parse_error',
  'image_content_policy_violation',
  'invalid_image_mode',
  'image_file_too_large',
  'unsupported_image_media_type',
  'empty_image_file',
  'failed_to_download_image',
  'image_file_not_found',
]);

/** Whether an error type a stream names is the request's fault (see REQUEST_FAULTS). */
export function isRequestFault(errorType: string): boolean {
  return REQUEST_FAULTS.has(errorType);
}
