import { type Clock, clampToNow } from '../clock';
import { BridgeError } from '../errors';
import type { ProviderAdapter } from '../providers/types';
import type { AttemptOutcome, CredentialLease, CredentialSource } from './credentials';

/** Longest cooldown an upstream's `retry-after` may impose on a key. */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;
/** The first cooldown after a 429/529 without `retry-after`; each further one in a row doubles it. */
export const BASE_COOLDOWN_MS = 1000;
/** Longest cooldown without `retry-after`. */
export const MAX_COOLDOWN_MS = 60_000;
const MINUTE = 60_000;

/** Where a key stands: serving, waiting out a 429/529, turned off by an admin, or refused by the upstream (401, or a 403 that names the key). */
/**
 * `unreadable`: stored, but this replica cannot open its secret (sealed under another
 * AIBRIDGE_MCP_CREDENTIALS_KEY); in no pool, listed so it can be removed (KeyPools.list).
 */
export type KeyState = 'active' | 'cooling' | 'disabled' | 'auth_failed' | 'unreadable';

/** One key of a pool as it serves: the providers file's entry or a stored one, merged by name. */
export interface PoolKey {
  readonly name: string;
  /** The secret; only ever handed to the adapter's `authHeaders`. */
  readonly key: string;
  readonly weight: number;
  readonly rpm?: number | undefined;
  readonly tpm?: number | undefined;
  readonly disabled: boolean;
  /** `file`: from the providers file (a stored override may change its weight, limits, state); `api`: added at run time. */
  readonly source: 'file' | 'api';
  /** When an admin last re-enabled it: a newer value clears `auth_failed` on every replica. */
  readonly reenabledAt?: string | undefined;
}

/** A key as the admin API shows it: never the secret. */
export interface KeyView {
  name: string;
  source: 'file' | 'api';
  weight: number;
  rpm: number | null;
  tpm: number | null;
  state: KeyState;
  /** When a cooling key serves again (ISO 8601); null unless cooling. */
  cooldownUntil: string | null;
  /** Counters on this replica since it started. */
  requests: number;
  rateLimited: number;
  authFailures: number;
  /** Requests and tokens in the last minute on this replica (what `rpm` and `tpm` are checked against). */
  lastMinute: { requests: number; tokens: number };
}

/** What a pool tells the rest of the bridge (metrics, alerts, logs); by key name, never the secret. */
export interface PoolEvents {
  attempt(instance: string, key: string): void;
  rateLimited(instance: string, key: string, status: number, cooldownMs: number): void;
  /** `reason`: what the provider said, when its body said the key is refused (out of credit, say). */
  authFailed(instance: string, key: string, status: number, reason?: string): void;
  /** The instance's single credential (no pool) was refused by the provider: it has no other. */
  credentialRefused?(instance: string, status: number, reason?: string): void;
}

interface Runtime {
  /** Smooth weighted round-robin's running weight (nginx's algorithm: deterministic, evenly spread). */
  current: number;
  cooldownUntil: number;
  /** When the cooldown was set: a clock that stepped back since finds it in the future. */
  cooldownFrom: number;
  /** 429/529s in a row: the exponential default's exponent. */
  streak: number;
  authFailed: boolean;
  reenabledAt: string | undefined;
  sent: number[];
  tokens: { at: number; n: number }[];
  requests: number;
  rateLimited: number;
  authFailures: number;
}

const fresh = (k: PoolKey): Runtime => ({
  current: 0,
  cooldownUntil: 0,
  cooldownFrom: 0,
  streak: 0,
  authFailed: false,
  reenabledAt: k.reenabledAt,
  sent: [],
  tokens: [],
  requests: 0,
  rateLimited: 0,
  authFailures: 0,
});

/**
 * The keys of one provider instance, one per upstream attempt: spread by weight among the keys not
 * disabled, not refused by the upstream, not cooling down and under their own rpm/tpm. A 429/529
 * cools the key down for the upstream's `retry-after` (capped at 5 minutes) or 1 s doubling up to
 * 60 s; a 401, a 403 naming the key or an account out of credit (key-refusal.ts) takes it out until
 * an admin re-enables or replaces it. Time is the injected clock.
 */
export class KeyPool implements CredentialSource {
  private keys: readonly PoolKey[] = [];
  private readonly state = new Map<string, Runtime>();

  constructor(
    readonly instance: string,
    private readonly adapter: Pick<ProviderAdapter, 'authHeaders'>,
    private readonly clock: Clock,
    private readonly events: PoolEvents,
  ) {}

  get size(): number {
    return this.keys.length;
  }

  /** Replaces the keys (a reload); a key that stays keeps its cooldown and counters. */
  setKeys(keys: readonly PoolKey[]): void {
    this.keys = keys;
    const names = new Set(keys.map((k) => k.name));
    for (const name of [...this.state.keys()]) if (!names.has(name)) this.state.delete(name);
    for (const k of keys) {
      const rt = this.state.get(k.name);
      if (!rt) this.state.set(k.name, fresh(k));
      else if (k.reenabledAt !== rt.reenabledAt) {
        // An admin acted on it since this replica last looked: give it a clean start.
        rt.reenabledAt = k.reenabledAt;
        rt.authFailed = false;
        rt.cooldownUntil = 0;
        rt.streak = 0;
      }
    }
  }

  async acquire(): Promise<CredentialLease> {
    const now = this.clock.now();
    const ready: { k: PoolKey; rt: Runtime }[] = [];
    let soonest = Number.POSITIVE_INFINITY;
    let authFailed = 0;
    for (const k of this.keys) {
      const rt = this.runtime(k);
      if (k.disabled) continue;
      if (rt.authFailed) {
        authFailed++;
        continue;
      }
      const free = this.freeAt(k, rt, now);
      if (free > now) soonest = Math.min(soonest, free - now);
      else ready.push({ k, rt });
    }
    if (ready.length === 0) throw this.none(soonest, authFailed);
    // Smooth weighted round-robin over the keys that can serve now.
    let total = 0;
    let best = ready[0]!;
    for (const c of ready) {
      c.rt.current += c.k.weight;
      total += c.k.weight;
      if (c.rt.current > best.rt.current) best = c;
    }
    best.rt.current -= total;
    const { k, rt } = best;
    rt.sent.push(now);
    rt.requests++;
    this.events.attempt(this.instance, k.name);
    const headers = await this.adapter.authHeaders(k.key);
    let reported = false;
    return {
      keyName: k.name,
      headers,
      report: (outcome) => {
        if (reported) return;
        reported = true;
        this.report(k.name, outcome);
      },
      used: (tokens) => {
        if (tokens > 0) rt.tokens.push({ at: this.clock.now(), n: tokens });
      },
    };
  }

  /** The keys as the admin API shows them. */
  list(): KeyView[] {
    const now = this.clock.now();
    return this.keys.map((k) => {
      const rt = this.runtime(k);
      this.prune(rt, now);
      const cooling = rt.cooldownUntil > now;
      return {
        name: k.name,
        source: k.source,
        weight: k.weight,
        rpm: k.rpm ?? null,
        tpm: k.tpm ?? null,
        state: k.disabled ? 'disabled' : rt.authFailed ? 'auth_failed' : cooling ? 'cooling' : 'active',
        cooldownUntil: cooling ? new Date(rt.cooldownUntil).toISOString() : null,
        requests: rt.requests,
        rateLimited: rt.rateLimited,
        authFailures: rt.authFailures,
        lastMinute: { requests: rt.sent.length, tokens: rt.tokens.reduce((s, t) => s + t.n, 0) },
      };
    });
  }

  private report(name: string, o: AttemptOutcome): void {
    const rt = this.state.get(name);
    // Removed while the attempt was under way: nothing to keep.
    if (!rt || o.requestsOwn) return;
    if (o.keyRefused === true) {
      // Its body says so (a leaked or revoked key, an account out of credit): out until an admin acts.
      rt.authFailures++;
      if (rt.authFailed) return;
      rt.authFailed = true;
      this.events.authFailed(this.instance, name, o.status, o.reason);
    } else if (o.status === 429 || o.status === 529) {
      rt.streak++;
      const ms =
        o.retryAfterMs !== undefined
          ? Math.min(o.retryAfterMs, MAX_RETRY_AFTER_MS)
          : Math.min(BASE_COOLDOWN_MS * 2 ** (rt.streak - 1), MAX_COOLDOWN_MS);
      rt.cooldownFrom = this.clock.now();
      rt.cooldownUntil = rt.cooldownFrom + ms;
      rt.rateLimited++;
      this.events.rateLimited(this.instance, name, o.status, ms);
    } else if (o.status === 401) {
      // A 403 is the key's only when its body says so (a leaked, blocked or suspended key): a
      // member's request can draw one from a valid key (a model, file or cached content the key's
      // project may not use), and taking keys out on that let one member empty the pool.
      rt.authFailures++;
      if (rt.authFailed) return;
      rt.authFailed = true;
      this.events.authFailed(this.instance, name, o.status);
    } else if (o.status >= 200 && o.status < 400) rt.streak = 0;
  }

  /** When the key can serve again: now, or the end of its cooldown or of its rpm/tpm minute. */
  private freeAt(k: PoolKey, rt: Runtime, now: number): number {
    this.prune(rt, now);
    let at = Math.max(now, rt.cooldownUntil);
    if (k.rpm !== undefined && rt.sent.length >= k.rpm)
      at = Math.max(at, rt.sent[rt.sent.length - k.rpm]! + MINUTE);
    if (k.tpm !== undefined) {
      let used = rt.tokens.reduce((s, t) => s + t.n, 0);
      // The minute frees up as old attempts' tokens leave it.
      for (const t of rt.tokens) {
        if (used < k.tpm) break;
        used -= t.n;
        at = Math.max(at, t.at + MINUTE);
      }
    }
    return at;
  }

  private prune(rt: Runtime, now: number): void {
    // The wall clock stepped back: a cooldown or a minute counted from a time after `now` would
    // last as long as the step. They count from now instead, no longer than they were given.
    if (rt.cooldownFrom > now) {
      rt.cooldownUntil -= rt.cooldownFrom - now;
      rt.cooldownFrom = now;
    }
    clampToNow(rt.sent, now);
    for (let i = rt.tokens.length - 1; i >= 0 && rt.tokens[i]!.at > now; i--) rt.tokens[i]!.at = now;
    while (rt.sent.length > 0 && rt.sent[0]! <= now - MINUTE) rt.sent.shift();
    while (rt.tokens.length > 0 && rt.tokens[0]!.at <= now - MINUTE) rt.tokens.shift();
  }

  private runtime(k: PoolKey): Runtime {
    let rt = this.state.get(k.name);
    if (!rt) {
      rt = fresh(k);
      this.state.set(k.name, rt);
    }
    return rt;
  }

  /** No key can serve now: cooling (429 with the shortest wait), refused (502), or all disabled (503). */
  private none(soonestMs: number, authFailed: number): BridgeError {
    if (Number.isFinite(soonestMs)) {
      const seconds = Math.max(1, Math.ceil(soonestMs / 1000));
      return new BridgeError(
        'upstream_keys_cooling',
        `Every key of provider instance "${this.instance}" is cooling down or at its limit; retry after ${seconds} s.`,
        { headers: { 'retry-after': String(seconds) } },
      );
    }
    if (authFailed > 0)
      return new BridgeError(
        'upstream_auth_failed',
        `Every key of provider instance "${this.instance}" was refused by the provider (401, a 403 naming the key, or its account out of credit); an admin must re-enable or replace them.`,
      );
    return new BridgeError(
      'provider_not_configured',
      `Every key of provider instance "${this.instance}" is disabled.`,
    );
  }
}
