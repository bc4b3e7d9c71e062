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
 * One breaker per provider and model. After `threshold` consecutive failures (429, 5xx, 529,
 * unreachable, timeout) it opens and refuses at once for `cooldownMs`; then it lets a single probe
 * through (half-open): success closes it, failure opens it again.
 */
export class CircuitBreakers {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly opts: BreakerOptions,
    private readonly now: () => number = Date.now,
  ) {}

  private entry(provider: string, model: string): Entry {
    const key = `${provider}\u0000${model}`;
    let e = this.entries.get(key);
    if (!e) {
      e = { provider, model, failures: 0, openedAt: null, probing: false };
      this.entries.set(key, e);
    }
    return e;
  }

  admit(provider: string, model: string | null): Admission {
    if (this.opts.threshold === 0) return { admitted: true, probe: false };
    const e = this.entry(provider, model ?? '*');
    if (e.openedAt === null) return { admitted: true, probe: false };
    const retryAt = e.openedAt + this.opts.cooldownMs;
    const t = this.now();
    if (t < retryAt) return { admitted: false, retryAfterMs: retryAt - t };
    if (e.probing) return { admitted: false, retryAfterMs: this.opts.cooldownMs };
    e.probing = true;
    return { admitted: true, probe: true };
  }

  /** The outcome of an admitted request; `undefined` (the client left) says nothing about the provider. */
  record(provider: string, model: string | null, healthy: boolean | undefined, probe: boolean): void {
    if (this.opts.threshold === 0) return;
    const e = this.entry(provider, model ?? '*');
    if (probe) e.probing = false;
    if (healthy === undefined) return;
    if (healthy) {
      e.failures = 0;
      e.openedAt = null;
      return;
    }
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

/** Whether an upstream status says the provider is in trouble (rather than the request being wrong). */
export function isProviderFailure(status: number): boolean {
  return status === 429 || status >= 500;
}
