import type { CacheBreak, CacheBreakCause, CacheFingerprint } from '../../shared/interception';
import type { Usage } from '../../shared/usage';
import type { PrefixAt } from '../core/facts';
import { RecentMap } from '../core/recent-map';
import { roundUsd } from '../core/rollup';
import type { NewInterception, Store } from '../store/types';

/** Below this many cacheable tokens a provider caches nothing (Anthropic's smallest cacheable prompt). */
const MIN_CACHED_TOKENS = 1024;
/** Cache reads at most this share of what the previous turn cached count as "near zero". */
const NEAR_ZERO = 0.1;
/** A break rewrites (Anthropic) or re-reads uncached (OpenAI) at least this share of the context. */
const REWRITE_SHARE = 0.5;
/**
 * Sessions whose last turns are remembered in memory, at most (RecentMap: sessions are client-chosen,
 * and a Map dropping its oldest one at a time cost ~10 µs a new session once full); older ones are
 * read back from the store.
 */
const MAX_SESSIONS = 10_000;
/**
 * Turns remembered per session, the newest of each model, tools and system prompt: an agent
 * session interleaves several conversations (Claude Code's main agent, its subagents, its small
 * side requests to another model), each with its own cache, and a subagent's thirty turns must
 * not push the main agent's last one out.
 */
const CONFIGS_PER_SESSION = 8;
/** Records read back from the store for a session's earlier turns (a restart, another replica). */
const STORED_TURNS = 100;

/** What a turn's cache depends on besides its messages: one conversation's kind of turn. */
function configOf(t: Turn): string {
  return `${t.cacheKey.v ?? 0}\u0000${t.model ?? ''}\u0000${t.cacheKey.tools}\u0000${t.cacheKey.system}`;
}

/** Newest first, and the newest turn of each config only. */
function newestPerConfig(turns: Iterable<Turn>, limit: number): Turn[] {
  const sorted = [...turns].sort((a, b) =>
    a.startedAt < b.startedAt ? 1 : a.startedAt > b.startedAt ? -1 : 0,
  );
  const seen = new Set<string>();
  const out: Turn[] = [];
  for (const t of sorted) {
    const c = configOf(t);
    if (seen.has(c)) continue;
    seen.add(c);
    out.push(t);
    if (out.length === limit) break;
  }
  return out;
}

/** What one turn needs to be compared with the next. */
interface Turn {
  id: string;
  model: string | null;
  startedAt: string;
  usage: Usage;
  cacheKey: CacheFingerprint;
}

type Pricing = (provider: string, model: string | null, usage: Usage, at: Date) => number | null;

function turnOf(
  rec: Omit<NewInterception, 'cacheKey'> & { cacheKey?: CacheFingerprint | undefined },
): Turn | null {
  if (!rec.cacheKey || rec.status !== 'ok') return null;
  return { id: rec.id, model: rec.model, startedAt: rec.startedAt, usage: rec.usage, cacheKey: rec.cacheKey };
}

/**
 * Whether the turn looks like a rewrite at all (most of its context written or sent uncached):
 * only then is the previous turn worth reading back from the store.
 */
function rewrote(cur: Turn): boolean {
  const c = cur.usage;
  const rewritten = cur.cacheKey.mode === 'explicit' ? c.cacheWrite : c.input;
  return (
    rewritten >= MIN_CACHED_TOKENS && rewritten >= REWRITE_SHARE * (c.input + c.cacheRead + c.cacheWrite)
  );
}

/** The likely cause, by what changed between the turns, in the order that makes a cache unreadable first. */
export function causeOf(prev: Turn, cur: Turn, prefixAt: PrefixAt | undefined): CacheBreakCause {
  if (prev.model !== cur.model) return 'model_changed';
  // Hashes of another version (a turn recorded before an upgrade) say nothing of what changed.
  const comparable = prev.cacheKey.v === cur.cacheKey.v;
  if (comparable && prev.cacheKey.tools !== cur.cacheKey.tools) return 'tools_changed';
  if (comparable && prev.cacheKey.system !== cur.cacheKey.system) return 'system_changed';
  const gapMs = Date.parse(cur.startedAt) - Date.parse(prev.startedAt);
  if (gapMs > prev.cacheKey.ttlSeconds * 1000) return 'ttl_expired';
  if (
    comparable &&
    prefixAt &&
    prev.cacheKey.messages > 0 &&
    prefixAt(prev.cacheKey.messages) !== prev.cacheKey.prefix
  )
    return 'context_edited';
  return 'unknown';
}

/**
 * Whether `cur` lost the cache `prev` built: `prev` was cached, and `cur` read (near) nothing from the
 * cache while writing (or, with automatic caching, sending uncached) about its whole context. Priced
 * as the turn's cost against its cost had those tokens been cache reads.
 */
export function judge(
  prev: Turn,
  cur: Turn,
  prefixAt: PrefixAt | undefined,
  provider: string,
  price: Pricing,
): CacheBreak | null {
  const p = prev.usage;
  const c = cur.usage;
  if (p.cacheRead + p.cacheWrite === 0) return null;
  // An explicit cache holds the prefix up to the marker; an automatic one the whole previous prompt.
  const cacheable =
    prev.cacheKey.mode === 'explicit' ? p.cacheRead + p.cacheWrite : p.input + p.cacheRead + p.cacheWrite;
  if (cacheable < MIN_CACHED_TOKENS || c.cacheRead > NEAR_ZERO * cacheable) return null;
  if (!rewrote(cur)) return null;
  const explicit = cur.cacheKey.mode === 'explicit';
  const rewritten = explicit ? c.cacheWrite : c.input;
  const tokens = Math.min(cacheable, rewritten);
  if (tokens < MIN_CACHED_TOKENS) return null;
  const cached: Usage = explicit
    ? withOneHourWrites({ ...c, cacheWrite: c.cacheWrite - tokens, cacheRead: c.cacheRead + tokens })
    : { ...c, input: c.input - tokens, cacheRead: c.cacheRead + tokens };
  const at = new Date(cur.startedAt);
  const actualUsd = price(provider, cur.model, c, at);
  const cachedUsd = price(provider, cur.model, cached, at);
  return {
    cause: causeOf(prev, cur, prefixAt),
    excessUsd: actualUsd === null || cachedUsd === null ? null : roundUsd(Math.max(0, actualUsd - cachedUsd)),
    tokens,
    previousInterceptionId: prev.id,
  };
}

/**
 * The turn `cur` continues, among a session's earlier turns (newest first): the newest that is of
 * its own conversation, whether `cur`'s messages start with the messages it cached (whatever else
 * changed: a tool added, the model switched) or it has the same model, tools and system (its
 * earlier messages were edited). Another conversation of the session (a subagent, a side request
 * to a small model) is neither: with only those before it, `cur` starts its own, and is no break.
 */
export function predecessor(
  earlier: readonly Turn[],
  cur: Turn,
  prefixAt: PrefixAt | undefined,
): Turn | undefined {
  const hashes = new Map<number, string | undefined>();
  const continues = (t: Turn): boolean => {
    const n = t.cacheKey.messages;
    if (n === 0 || !prefixAt) return false;
    if (!hashes.has(n)) hashes.set(n, prefixAt(n));
    return hashes.get(n) === t.cacheKey.prefix;
  };
  return earlier.find(
    (t) =>
      t.cacheKey.v === cur.cacheKey.v &&
      ((t.model === cur.model &&
        t.cacheKey.tools === cur.cacheKey.tools &&
        t.cacheKey.system === cur.cacheKey.system) ||
        continues(t)),
  );
}

/**
 * Compares each turn of an agent session with the turn it continues (`predecessor`), and marks the
 * turns that rewrote the whole cache (docs/governance.md "Prompt-cache breaks"). A session's last
 * turns are remembered in memory; with a store other replicas write to, or after a restart, they
 * are read back from the store (each record keeps its fingerprint) with this replica's. Only hashes
 * are kept, never bodies.
 */
export class CacheBreakDetector {
  /** Per session, its last turns, newest first. */
  private readonly last = new RecentMap<string, Turn[]>(MAX_SESSIONS);

  constructor(
    private readonly store: Pick<Store, 'shared' | 'listInterceptions'>,
    private readonly price: Pricing,
    private readonly onBreak: (rec: NewInterception, brk: CacheBreak) => void,
  ) {}

  /**
   * The record with its `cacheBreak` set when the turn broke the session's cache. Answered at once
   * unless the previous turn must be read from the store (another replica's, or from before a
   * restart).
   */
  readonly annotate = (
    rec: NewInterception,
    prefixAt?: PrefixAt,
  ): NewInterception | Promise<NewInterception> => {
    const cur = turnOf(rec);
    if (!cur || rec.sessionId === null) return rec;
    const key = `${rec.userId}\u0000${rec.sessionId}`;
    // Taken and updated before any await, so a turn finishing meanwhile compares with this one.
    const mine = (this.last.get(key) ?? []).filter((t) => t.startedAt <= cur.startedAt);
    this.remember(key, cur);
    if (!rewrote(cur)) return rec;
    const local = predecessor(mine, cur, prefixAt);
    if (local && !this.store.shared) return this.judged(rec, cur, local, prefixAt);
    return this.earlier(rec, mine).then((earlier) => {
      const prev = predecessor(earlier, cur, prefixAt);
      return prev ? this.judged(rec, cur, prev, prefixAt) : rec;
    });
  };

  private judged(
    rec: NewInterception,
    cur: Turn,
    prev: Turn,
    prefixAt: PrefixAt | undefined,
  ): NewInterception {
    const brk = judge(prev, cur, prefixAt, rec.provider, this.price);
    if (!brk) return rec;
    this.onBreak(rec, brk);
    return { ...rec, cacheBreak: brk };
  }

  private remember(key: string, turn: Turn): void {
    const turns = this.last.get(key) ?? [];
    // Newest first, whatever order the turns finish in. Set again, the session is the newest.
    this.last.set(key, newestPerConfig([turn, ...turns], CONFIGS_PER_SESSION));
  }

  /** The session's turns before `rec`, newest first: the store's and `mine` (this replica's). */
  private async earlier(rec: NewInterception, mine: readonly Turn[]): Promise<Turn[]> {
    const page = await this.store.listInterceptions(
      { userId: rec.userId, sessionId: rec.sessionId ?? undefined, until: rec.startedAt },
      STORED_TURNS,
    );
    const byId = new Map(mine.map((t) => [t.id, t]));
    for (const r of page.items) {
      const t = r.id === rec.id ? null : turnOf(r);
      if (t && !byId.has(t.id)) byId.set(t.id, t);
    }
    return newestPerConfig(byId.values(), STORED_TURNS);
  }
}

/** The one-hour part of the writes never more than the writes (fewer of them had the cache held). */
function withOneHourWrites(u: Usage): Usage {
  if (u.cacheWrite1h === undefined || u.cacheWrite1h <= u.cacheWrite) return u;
  const { cacheWrite1h: _more, ...rest } = u;
  return u.cacheWrite > 0 ? { ...rest, cacheWrite1h: u.cacheWrite } : rest;
}
