import { createHash } from 'node:crypto';
import type { CacheFacts, PrefixAt } from '../core/facts';
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

/**
 * The hash of the first `k` stripped messages ('' for none; undefined past the end): one running
 * hash and one digest. Copying the hash's state at every message, to have each prefix at hand,
 * cost more than the serialising on long conversations, and only a suspected cache break ever asks
 * for a prefix other than the fingerprint's own.
 */
function prefixHash(stripped: readonly unknown[], k: number): string | undefined {
  if (!Number.isInteger(k) || k < 0 || k > stripped.length) return undefined;
  if (k === 0) return '';
  const h = createHash('sha256');
  // One update per message: the same bytes, message by message, each followed by a newline.
  for (let i = 0; i < k; i++) h.update(`${JSON.stringify(stripped[i]) ?? ''}\n`);
  return h.digest('hex').slice(0, HASH_CHARS);
}

/** The fingerprint's prefix now, any other prefix when asked (the stripped messages kept meanwhile). */
function prefixFacts(stripped: unknown[], k: number): { prefix: string; prefixAt: PrefixAt } {
  const prefix = prefixHash(stripped, k) ?? '';
  return { prefix, prefixAt: (n) => (n === k ? prefix : prefixHash(stripped, n)) };
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
  const { prefix, prefixAt } = prefixFacts(m.stripped, m.lastMarked);
  return {
    fingerprint: {
      mode: 'explicit',
      tools: hashOf(strippedTools),
      system: hashOf(strippedSystem),
      ttlSeconds: h.ttlSeconds,
      messages: m.lastMarked,
      prefix,
    },
    prefixAt,
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
  const { prefix, prefixAt } = prefixFacts(h.messages(list).stripped, list.length);
  return {
    fingerprint: {
      mode: 'automatic',
      tools: hashOf(h.strip(tools)),
      system: hashOf(h.strip(system)),
      messages: list.length,
      prefix,
      ttlSeconds: retention === '24h' ? 86_400 : DEFAULT_TTL_SECONDS,
    },
    prefixAt,
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
