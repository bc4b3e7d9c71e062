import { randomUUID } from 'node:crypto';
import type { RateLimit, RateLimitScope } from '../../shared/spend';
import { clampToNow } from '../clock';
import type { Principal } from '../core/principal';
import { BridgeError } from '../errors';
import { sendInChunks } from '../store/notify-chunks';
import type { RateCount, Store } from '../store/types';

const WINDOW_MS = 60_000;

/**
 * How often a replica tells the others what it counted since it last did (PostgreSQL store): how
 * far a limit can be overrun, across replicas, by a member whose requests are spread over them.
 */
export const RATE_SHARE_MS = 250;

/** Timestamps (and amounts) of the last minute, oldest first. */
class Window {
  private readonly at: number[] = [];
  private readonly amounts: number[] = [];
  private sum = 0;

  private prune(now: number): void {
    // Entries stamped after `now` would stay for the length of a backward clock step, locking the
    // user out for it: they count for one window at most.
    clampToNow(this.at, now);
    while (this.at.length > 0 && this.at[0]! <= now - WINDOW_MS) {
      this.at.shift();
      this.sum -= this.amounts.shift()!;
    }
  }

  total(now: number): number {
    this.prune(now);
    return this.sum;
  }

  /** When the window will have dropped below `limit` again. */
  retryAfterMs(now: number, limit: number): number {
    this.prune(now);
    let excess = this.sum - limit;
    for (let i = 0; i < this.at.length; i++) {
      excess -= this.amounts[i]!;
      if (excess < 0) return Math.max(1, this.at[i]! + WINDOW_MS - now);
    }
    return WINDOW_MS;
  }

  add(now: number, amount: number): void {
    this.prune(now);
    this.at.push(now);
    this.amounts.push(amount);
    this.sum += amount;
  }
}

interface Applied {
  rpm: number | null;
  tpm: number | null;
  /** Window key: which limit's counters this request counts against. */
  id: string;
  label: string;
}

/** A request's tokens held in its `tpm` windows while it runs (RateLimiter.admit). */
interface Held {
  ids: string[];
  tokens: number;
  at: number;
}

/**
 * How long a request's held tokens count at most: a request that never settled (its record lost)
 * must not hold its user's windows for good. A stream running longer is counted when it ends.
 */
const HOLD_MS = 60 * 60_000;
/** How long a request whose hold lapsed is still known, so its usage counts when it does end. */
const FORGET_MS = 24 * 60 * 60_000;

/**
 * Requests and tokens per minute per key or per user, in sliding one-minute windows. A request
 * holds its estimate (its body's tokens and its output cap, as providers count their own limits)
 * in its `tpm` windows while it runs, and its real usage replaces that when it ends; one is
 * refused while the last minute's tokens and those held are at or over the limit. So requests in
 * parallel cannot pass a limit by more than the last one admitted.
 */
export class RateLimiter {
  private readonly limits = new Map<string, RateLimit>();
  private readonly requests = new Map<string, Window>();
  private readonly tokens = new Map<string, Window>();
  /** Which windows each in-flight interception counts against, and what it holds in them. */
  private readonly inFlight = new Map<string, Held>();
  /** Tokens held by requests in flight, per window. */
  private readonly held = new Map<string, number>();
  /** Counted here since the other replicas were last told (`share`); undefined: nobody to tell. */
  private unshared: Map<string, { requests: number; tokens: number }> | undefined;

  constructor(
    private readonly store: Store,
    private readonly defaults: { rpm: number; tpm: number },
    private readonly now: () => number = Date.now,
  ) {}

  /** Reads the stored limits, replacing what was loaded (again when another replica changes them). */
  async load(): Promise<void> {
    const limits = await this.store.listDocs<RateLimit>('rate_limit');
    this.limits.clear();
    for (const l of limits) this.limits.set(l.id, l);
  }

  list(): RateLimit[] {
    return [...this.limits.values()];
  }

  async put(
    scope: RateLimitScope,
    subject: string,
    rpm: number | null,
    tpm: number | null,
  ): Promise<RateLimit> {
    const existing = [...this.limits.values()].find((l) => l.scope === scope && l.subject === subject);
    const limit: RateLimit = {
      id: existing?.id ?? `rl_${randomUUID()}`,
      scope,
      subject,
      rpm,
      tpm,
      createdAt: existing?.createdAt ?? new Date().toISOString(),
    };
    await this.store.putDoc('rate_limit', limit.id, limit);
    this.limits.set(limit.id, limit);
    return limit;
  }

  async delete(id: string): Promise<RateLimit> {
    const l = this.limits.get(id);
    if (!l) throw new BridgeError('rate_limit_not_found');
    await this.store.deleteDoc('rate_limit', id);
    this.limits.delete(id);
    return l;
  }

  /** A key's own limit wins over its user's, which wins over the default. */
  private applicable(p: Principal): Applied[] {
    const out: Applied[] = [];
    let userLimited = false;
    for (const l of this.limits.values()) {
      if (l.scope === 'key' && l.subject === p.key.id) {
        out.push({ rpm: l.rpm, tpm: l.tpm, id: l.id, label: `key ${p.key.prefix}…` });
      }
      if (l.scope === 'user' && l.subject === p.user.id) {
        out.push({ rpm: l.rpm, tpm: l.tpm, id: l.id, label: `user ${p.user.email}` });
        userLimited = true;
      }
    }
    if (!userLimited && (this.defaults.rpm > 0 || this.defaults.tpm > 0)) {
      out.push({
        rpm: this.defaults.rpm || null,
        tpm: this.defaults.tpm || null,
        id: `default:${p.user.id}`,
        label: `the default for user ${p.user.email}`,
      });
    }
    return out;
  }

  private window(map: Map<string, Window>, id: string): Window {
    let w = map.get(id);
    if (!w) {
      w = new Window();
      map.set(id, w);
    }
    return w;
  }

  /**
   * Counts the request, or throws `rate_limited` with `retry-after`. `estimate`: the tokens it may
   * use, held in its `tpm` windows until it settles. `continuing`: a later round of an exchange
   * already admitted (tool injection), judged on the tokens of requests that have ended.
   */
  admit(interceptionId: string, p: Principal, estimate = 0, continuing = false): void {
    const now = this.now();
    const applied = this.applicable(p);
    if (this.inFlight.size > 0) this.dropStale(now);
    for (const a of applied) {
      if (a.rpm !== null) {
        const w = this.window(this.requests, a.id);
        if (w.total(now) >= a.rpm)
          throw limited(
            `${a.rpm} ${a.rpm === 1 ? 'request' : 'requests'} per minute (${a.label})`,
            w.retryAfterMs(now, a.rpm),
          );
      }
      if (a.tpm !== null) {
        const w = this.window(this.tokens, a.id);
        const used = w.total(now);
        // A later round of an exchange under way is judged on what has ended: what is held is,
        // in part, the round it follows (recorded only once this one is admitted).
        if (used + (continuing ? 0 : (this.held.get(a.id) ?? 0)) >= a.tpm)
          throw limited(
            `${a.tpm} ${a.tpm === 1 ? 'token' : 'tokens'} per minute (${a.label})`,
            // Held by requests still running: they give it back as they end.
            used >= a.tpm ? w.retryAfterMs(now, a.tpm) : 1000,
          );
      }
    }
    for (const a of applied) {
      if (a.rpm === null) continue;
      this.window(this.requests, a.id).add(now, 1);
      if (this.unshared) this.counted(a.id).requests += 1;
    }
    const ids = applied.filter((a) => a.tpm !== null).map((a) => a.id);
    if (ids.length === 0) return;
    const tokens = Math.max(0, estimate);
    this.inFlight.set(interceptionId, { ids, tokens, at: now });
    if (tokens > 0) for (const id of ids) this.held.set(id, (this.held.get(id) ?? 0) + tokens);
  }

  settle(interceptionId: string, tokens: number): void {
    const h = this.inFlight.get(interceptionId);
    if (!h) return;
    this.release(interceptionId, h);
    const now = this.now();
    for (const id of h.ids) {
      this.window(this.tokens, id).add(now, tokens);
      if (this.unshared && tokens > 0) this.counted(id).tokens += tokens;
    }
  }

  /** Tokens held in `id`'s window by requests in flight (tests, and the limit's view). */
  heldIn(id: string): number {
    return this.held.get(id) ?? 0;
  }

  private release(interceptionId: string, h: Held): void {
    this.inFlight.delete(interceptionId);
    this.unhold(h);
  }

  /** What a request holds in its windows, given back (it stays known, to be settled). */
  private unhold(h: Held): void {
    if (h.tokens === 0) return;
    for (const id of h.ids) {
      const left = (this.held.get(id) ?? 0) - h.tokens;
      if (left > 0) this.held.set(id, left);
      else this.held.delete(id);
    }
    h.tokens = 0;
  }

  /**
   * Requests admitted over HOLD_MS ago give their holds back (oldest first); one still running
   * is counted when it ends, unless it never does within FORGET_MS.
   */
  private dropStale(now: number): void {
    for (const [id, h] of this.inFlight) {
      if (now - h.at < HOLD_MS) return;
      if (now - h.at >= FORGET_MS) this.inFlight.delete(id);
      this.unhold(h);
    }
  }

  private counted(id: string): { requests: number; tokens: number } {
    const unshared = this.unshared!;
    let c = unshared.get(id);
    if (c === undefined) {
      c = { requests: 0, tokens: 0 };
      unshared.set(id, c);
    }
    return c;
  }

  /**
   * Windows are counted on every replica, not each on its own: every `everyMs` this one sends what
   * it counted since the last time (`send`, the store's broadcast), and adds what the others sent
   * (`heard`) to its own windows as it arrives. A member spreading requests over replicas is held
   * to one limit, overrun by at most what the other replicas admit in one interval (docs/spend.md).
   * Returns a stop that sends what is left.
   */
  share(send: (counts: RateCount[]) => void, everyMs = RATE_SHARE_MS): () => void {
    this.unshared = new Map();
    const flush = (): void => {
      const unshared = this.unshared;
      if (!unshared || unshared.size === 0) return;
      this.unshared = new Map();
      sendInChunks(
        Array.from(unshared, ([id, c]): RateCount => [id, c.requests, c.tokens]),
        send,
      );
    };
    const timer = setInterval(flush, everyMs);
    timer.unref();
    return () => {
      clearInterval(timer);
      flush();
      this.unshared = undefined;
    };
  }

  /**
   * What another replica counted (`share`), added as if counted here now: it leaves the window a
   * little later than it would have there, which errs towards the limit. Anything malformed (a
   * replica of another version) is skipped.
   */
  heard(counts: unknown): void {
    if (!Array.isArray(counts)) return;
    const now = this.now();
    for (const c of counts as unknown[]) {
      if (!Array.isArray(c) || typeof c[0] !== 'string') continue;
      const [id, requests, tokens] = c as [string, unknown, unknown];
      if (typeof requests === 'number' && requests > 0 && Number.isFinite(requests))
        this.window(this.requests, id).add(now, requests);
      if (typeof tokens === 'number' && tokens > 0 && Number.isFinite(tokens))
        this.window(this.tokens, id).add(now, tokens);
    }
  }
}

function limited(what: string, retryAfterMs: number): BridgeError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new BridgeError('rate_limited', `Rate limit of ${what} reached; retry in ${seconds}s.`, {
    headers: { 'retry-after': String(seconds) },
  });
}
