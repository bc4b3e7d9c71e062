import { createHash } from 'node:crypto';
import type { CacheFingerprint } from '../../shared/interception';
import type { CacheFacts } from '../core/facts';
import { isObject } from './common';

/** Hex characters kept of each SHA-256: enough to tell two tool lists apart, small on the record. */
const HASH_CHARS = 16;
const DEFAULT_TTL_SECONDS = 300;
const TTL_SECONDS: Readonly<Record<string, number>> = { '5m': 300, '1h': 3600 };

/**
 * Hashes request parts the way the cache sees them: cache markers are left out (agents move their
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
  private strip(v: unknown): unknown {
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

  json(v: unknown): string {
    return JSON.stringify(this.strip(v)) ?? '';
  }

  hash(v: unknown): string {
    return v === undefined
      ? ''
      : createHash('sha256').update(this.json(v)).digest('hex').slice(0, HASH_CHARS);
  }

  /** The hash of every prefix of `messages` (index k: the first k), in one pass. */
  prefixes(messages: unknown[]): { all: string[]; lastMarked: number } {
    const h = createHash('sha256');
    const all = [''];
    let lastMarked = 0;
    for (const [i, m] of messages.entries()) {
      const before = this.marked;
      this.marked = false;
      h.update(this.json(m)).update('\n');
      if (this.marked) lastMarked = i + 1;
      this.marked ||= before;
      all.push(h.copy().digest('hex').slice(0, HASH_CHARS));
    }
    return { all, lastMarked };
  }
}

/**
 * An explicit cache (Anthropic Messages): the cached prefix ends at the last message that carries a
 * `cache_control` marker. Undefined when the request marks nothing (it uses no cache).
 */
export function explicitCacheFacts(
  tools: unknown,
  system: unknown,
  messages: unknown,
): CacheFacts | undefined {
  const h = new CacheHasher();
  const fingerprint: Omit<CacheFingerprint, 'messages' | 'prefix'> = {
    mode: 'explicit',
    tools: h.hash(tools),
    system: h.hash(system),
    ttlSeconds: 0,
  };
  const p = h.prefixes(Array.isArray(messages) ? messages : []);
  if (!h.marked) return undefined;
  return {
    fingerprint: {
      ...fingerprint,
      messages: p.lastMarked,
      prefix: p.all[p.lastMarked]!,
      ttlSeconds: h.ttlSeconds,
    },
    prefixes: p.all,
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
  const p = h.prefixes(list);
  return {
    fingerprint: {
      mode: 'automatic',
      tools: h.hash(tools),
      system: h.hash(system),
      messages: list.length,
      prefix: p.all[list.length]!,
      ttlSeconds: retention === '24h' ? 86_400 : DEFAULT_TTL_SECONDS,
    },
    prefixes: p.all,
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
