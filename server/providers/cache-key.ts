import { createHash } from 'node:crypto';
import type { CacheFacts, PrefixAt } from '../core/facts';
import { isObject } from './common';

/** Hex characters kept of each SHA-256: enough to tell two tool lists apart, small on the record. */
const HASH_CHARS = 16;
const DEFAULT_TTL_SECONDS = 300;
const TTL_SECONDS: Readonly<Record<string, number>> = { '5m': 300, '1h': 3600 };

/**
 * The version of the fingerprint's hashes (`CacheFingerprint.v`): 3 hashes the encoding below, a
 * message's string content as the one text block it stands for (`asBlocks`); 2 hashed the string
 * as it was. A fingerprint without `v` hashed JSON.stringify of the same parts. Versions never
 * compare equal, so a cache break judged across them does not blame a change
 * (server/audit/cache-breaks.ts).
 */
export const FINGERPRINT_VERSION = 3;

/**
 * The cache markers (`cache_control`) of a request's parts: whether there are any, which message
 * is the last with one, and the longest TTL one asks for.
 */
class CacheMarkers {
  ttlSeconds = 0;
  marked = false;

  private note(marker: unknown): void {
    this.marked = true;
    const ttl = isObject(marker) && typeof marker.ttl === 'string' ? TTL_SECONDS[marker.ttl] : undefined;
    this.ttlSeconds = Math.max(this.ttlSeconds, ttl ?? DEFAULT_TTL_SECONDS);
  }

  /** Whether the value holds a cache marker, noting each one: a walk that builds nothing. */
  scan(v: unknown): boolean {
    if (typeof v !== 'object' || v === null) return false;
    let found = false;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) if (this.scan(v[i])) found = true;
      return found;
    }
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (k === 'cache_control') {
        this.note(o[k]);
        found = true;
      } else if (this.scan(o[k])) found = true;
    }
    return found;
  }

  /** How many messages there are up to the last one with a marker (0: none has one). */
  lastMarked(list: readonly unknown[]): number {
    let last = 0;
    for (let i = 0; i < list.length; i++) if (this.scan(list[i])) last = i + 1;
    return last;
  }
}

/**
 * A request part as its hash reads it, cache markers left out (agents move their `cache_control`
 * to the newest message each turn, which does not change the cached prefix). A letter per value
 * (`s` string, `n` number, `t`/`f`, `z` null, `[`…`]`, `{`…`}`), strings and keys preceded by their
 * length (or, holding a lone surrogate, as JSON after a `w`), keys in the order JSON.stringify
 * writes them. Every value's end is known from its start, so two values encode the same only if
 * JSON.stringify would write them the same (with markers left out), and nothing is escaped:
 * JSON.stringify of an agent's body, strings of code full of quotes, cost most of the fingerprint
 * (docs/performance.md#fingerprint-encoding). Built as concatenations, so the strings themselves
 * are copied once, by the hash.
 */
function encode(v: unknown): string {
  switch (typeof v) {
    case 'string':
      // Hashed as UTF-8, where a lone surrogate would become U+FFFD: such a string goes as JSON,
      // which escapes it (one-byte strings, most of a body, answer at once).
      return wellFormed(v) ? `s${v.length}:${v}` : `w${JSON.stringify(v)}`;
    case 'number':
      // JSON has no NaN or Infinity; written as JSON.stringify would write them (null).
      return Number.isFinite(v) ? `n${v};` : 'z';
    case 'boolean':
      return v ? 't' : 'f';
    case 'object':
      break;
    default:
      // undefined in an array (JSON.stringify writes null); never in a parsed body.
      return 'z';
  }
  if (v === null) return 'z';
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) out += encode(v[i]);
    return `${out}]`;
  }
  const o = v as Record<string, unknown>;
  let out = '{';
  for (const k of Object.keys(o)) {
    if (k === 'cache_control') continue;
    const x = o[k];
    if (x === undefined || typeof x === 'function' || typeof x === 'symbol') continue;
    out += `${wellFormed(k) ? `${k.length}:${k}` : `w${JSON.stringify(k)}`}${encode(x)}`;
  }
  return `${out}}`;
}

/** `String.prototype.isWellFormed` (Node 20; ES2024, past this project's `lib`). */
function wellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** The hash of a part ('' for none). */
function hashOf(part: unknown): string {
  return part === undefined
    ? ''
    : createHash('sha256').update(encode(part), 'utf8').digest('hex').slice(0, HASH_CHARS);
}

/**
 * The hash of the first `k` messages ('' for none; undefined past the end): one running hash and
 * one digest. Copying the hash's state at every message, to have each prefix at hand, cost more
 * than the encoding on long conversations, and only a suspected cache break ever asks for a prefix
 * other than the fingerprint's own.
 */
function prefixHash(list: readonly unknown[], k: number): string | undefined {
  if (!Number.isInteger(k) || k < 0 || k > list.length) return undefined;
  if (k === 0) return '';
  const hash = createHash('sha256');
  // Each message's encoding says where it ends: no separator is needed between them.
  for (let i = 0; i < k; i++) hash.update(encode(asBlocks(list[i])), 'utf8');
  return hash.digest('hex').slice(0, HASH_CHARS);
}

/**
 * A message with string content as the one text block it stands for: the provider reads the two
 * alike (so does its cache), and a client that marks its newest message for caching sends it as a
 * block that the next turn sends as a string again (the SDKs' examples do).
 */
function asBlocks(m: unknown): unknown {
  if (!isObject(m) || typeof m.content !== 'string') return m;
  return { ...m, content: [{ type: 'text', text: m.content }] };
}

/**
 * The fingerprint's prefix now, any other prefix when asked. The messages are kept, not their
 * encodings: an encoding hashed once is a flat copy of the message's text, and kept until the
 * record is annotated it outlived two scavenges and went to the old generation.
 */
function prefixFacts(list: readonly unknown[], k: number): { prefix: string; prefixAt: PrefixAt } {
  const prefix = prefixHash(list, k) ?? '';
  return { prefix, prefixAt: (n) => (n === k ? prefix : prefixHash(list, n)) };
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
  const markers = new CacheMarkers();
  const list = Array.isArray(messages) ? messages : [];
  markers.scan(tools);
  markers.scan(system);
  const lastMarked = markers.lastMarked(list);
  if (!markers.marked) return undefined;
  const { prefix, prefixAt } = prefixFacts(list, lastMarked);
  return {
    fingerprint: {
      mode: 'explicit',
      tools: hashOf(tools),
      system: hashOf(system),
      ttlSeconds: markers.ttlSeconds,
      messages: lastMarked,
      prefix,
      v: FINGERPRINT_VERSION,
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
  const list = Array.isArray(messages) ? messages : typeof messages === 'string' ? [messages] : [];
  const { prefix, prefixAt } = prefixFacts(list, list.length);
  return {
    fingerprint: {
      mode: 'automatic',
      tools: hashOf(tools),
      system: hashOf(system),
      messages: list.length,
      prefix,
      ttlSeconds: retention === '24h' ? 86_400 : DEFAULT_TTL_SECONDS,
      v: FINGERPRINT_VERSION,
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
