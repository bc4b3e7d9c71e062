import { createHash } from 'node:crypto';
import type { CacheFacts } from '../core/facts';
import { isObject } from './common';

/** Hex characters kept of each SHA-256: enough to tell two tool lists apart, small on the record. */
const HASH_CHARS = 16;
const DEFAULT_TTL_SECONDS = 300;
const TTL_SECONDS: Readonly<Record<string, number>> = { '5m': 300, '1h': 3600 };

/**
 * Request parts the way the cache sees them: cache markers are left out (agents move their
 * `cache_control` to the newest message each turn, which does not change the cached prefix), and
 * the longest TTL a marker asks for is noted as the walk passes it.
 */
class CacheHasher {
  ttlSeconds = 0;
  marked = false;

  private note(marker: unknown): void {
    this.marked = true;
    const ttl = isObject(marker) && typeof marker.ttl === 'string' ? TTL_SECONDS[marker.ttl] : undefined;
    this.ttlSeconds = Math.max(this.ttlSeconds, ttl ?? DEFAULT_TTL_SECONDS);
  }

  /**
   * The value without its `cache_control` keys: itself when its subtree has none (most of a
   * request), else a copy with the same keys in the same order. A walk in JS, then the native
   * JSON.stringify: a replacer function would cost a call back into JS for every key.
   */
  strip(v: unknown): unknown {
    if (typeof v !== 'object' || v === null) return v;
    if (Array.isArray(v)) {
      let copy: unknown[] | undefined;
      for (let i = 0; i < v.length; i++) {
        const x: unknown = v[i];
        const y = this.strip(x);
        if (copy === undefined && y !== x) copy = v.slice(0, i);
        copy?.push(y);
      }
      return copy ?? v;
    }
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    let copy: Record<string, unknown> | undefined;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      const x = o[k];
      if (k === 'cache_control') {
        this.note(x);
        copy ??= this.upTo(o, keys, i);
        continue;
      }
      const y = this.strip(x);
      if (copy === undefined && y !== x) copy = this.upTo(o, keys, i);
      if (copy !== undefined) copy[k] = y;
    }
    return copy ?? v;
  }

  /** A copy of the first `n` keys. No prototype: a `__proto__` key from the wire stays a plain key. */
  private upTo(o: Record<string, unknown>, keys: string[], n: number): Record<string, unknown> {
    const copy = Object.create(null) as Record<string, unknown>;
    for (let j = 0; j < n; j++) copy[keys[j]!] = o[keys[j]!];
    return copy;
  }

  /** Each message without its markers, and how many messages there are up to the last marked one. */
  messages(list: unknown[]): { stripped: unknown[]; lastMarked: number } {
    const stripped: unknown[] = [];
    let lastMarked = 0;
    for (let i = 0; i < list.length; i++) {
      const before = this.marked;
      this.marked = false;
      stripped.push(this.strip(list[i]));
      if (this.marked) lastMarked = i + 1;
      this.marked ||= before;
    }
    return { stripped, lastMarked };
  }
}

/** The hash of a value its markers were stripped from ('' for none). */
function hashOf(stripped: unknown): string {
  return stripped === undefined
    ? ''
    : createHash('sha256')
        .update(JSON.stringify(stripped) ?? '')
        .digest('hex')
        .slice(0, HASH_CHARS);
}

/** The hash of every prefix of the stripped messages (index k: the first k), in one pass. */
function prefixHashes(stripped: unknown[]): string[] {
  const h = createHash('sha256');
  const all = [''];
  for (const m of stripped) {
    // One update per message: each call into the hash has a fixed cost, the bytes are the same.
    h.update(`${JSON.stringify(m) ?? ''}\n`);
    all.push(h.copy().digest('hex').slice(0, HASH_CHARS));
  }
  return all;
}

/**
 * An explicit cache (Anthropic Messages): the cached prefix ends at the last message that carries a
 * `cache_control` marker. Undefined when the request marks nothing (it uses no cache): markers are
 * looked for first, so such a request is never serialised or hashed.
 */
export function explicitCacheFacts(
  tools: unknown,
  system: unknown,
  messages: unknown,
): CacheFacts | undefined {
  const h = new CacheHasher();
  const strippedTools = h.strip(tools);
  const strippedSystem = h.strip(system);
  const m = h.messages(Array.isArray(messages) ? messages : []);
  if (!h.marked) return undefined;
  const all = prefixHashes(m.stripped);
  return {
    fingerprint: {
      mode: 'explicit',
      tools: hashOf(strippedTools),
      system: hashOf(strippedSystem),
      ttlSeconds: h.ttlSeconds,
      messages: m.lastMarked,
      prefix: all[m.lastMarked]!,
    },
    prefixes: all,
  };
}

/**
 * Automatic prefix caching (OpenAI): every prompt's prefix may be cached, so the whole input is the
 * prefix the next turn should find. `ttlSeconds`: how long an unused prefix stays (24 h with
 * `prompt_cache_retention: "24h"`, else the documented 5 to 10 minutes, taken as 5).
 */
export function automaticCacheFacts(
  tools: unknown,
  system: unknown,
  messages: unknown,
  retention: unknown,
): CacheFacts {
  const h = new CacheHasher();
  const list = Array.isArray(messages) ? messages : typeof messages === 'string' ? [messages] : [];
  const all = prefixHashes(h.messages(list).stripped);
  return {
    fingerprint: {
      mode: 'automatic',
      tools: hashOf(h.strip(tools)),
      system: hashOf(h.strip(system)),
      messages: list.length,
      prefix: all[list.length]!,
      ttlSeconds: retention === '24h' ? 86_400 : DEFAULT_TTL_SECONDS,
    },
    prefixes: all,
  };
}

/** Spread into RequestFacts: the `cache` field only when there is one (exactOptionalPropertyTypes). */
export function withCache(cache: CacheFacts | undefined): { cache?: CacheFacts } {
  return cache ? { cache } : {};
}

/** Chat Completions: the leading system/developer messages are the system prompt, the rest the prefix. */
export function chatCacheFacts(body: Record<string, unknown>): CacheFacts {
  const messages = Array.isArray(body.messages) ? (body.messages as unknown[]) : [];
  let n = 0;
  while (n < messages.length) {
    const m = messages[n];
    if (!isObject(m) || (m.role !== 'system' && m.role !== 'developer')) break;
    n++;
  }
  return automaticCacheFacts(
    body.tools,
    messages.slice(0, n),
    messages.slice(n),
    body.prompt_cache_retention,
  );
}
