import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { CacheFacts } from '../../server/core/facts';
import { automaticCacheFacts, explicitCacheFacts } from '../../server/providers/cache-key';
import { seededRandom } from '../helpers/seeded-random';

/**
 * The implementation fingerprints were made with before (JSON.stringify with a replacer): stored
 * fingerprints are compared with new ones to find cache breaks, so the new walk must give the same
 * hashes byte for byte.
 */
class HasherBefore {
  ttlSeconds = 0;
  marked = false;
  private readonly strip = (key: string, v: unknown): unknown => {
    if (key !== 'cache_control') return v;
    this.marked = true;
    const o =
      typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
    const ttl =
      typeof o?.ttl === 'string' ? ({ '5m': 300, '1h': 3600 } as Record<string, number>)[o.ttl] : undefined;
    this.ttlSeconds = Math.max(this.ttlSeconds, ttl ?? 300);
    return undefined;
  };
  json(v: unknown): string {
    return JSON.stringify(v, this.strip) ?? '';
  }
  hash(v: unknown): string {
    return v === undefined ? '' : createHash('sha256').update(this.json(v)).digest('hex').slice(0, 16);
  }
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
      all.push(h.copy().digest('hex').slice(0, 16));
    }
    return { all, lastMarked };
  }
}

function explicitBefore(tools: unknown, system: unknown, messages: unknown): unknown {
  const h = new HasherBefore();
  const tools_ = h.hash(tools);
  const system_ = h.hash(system);
  const p = h.prefixes(Array.isArray(messages) ? messages : []);
  if (!h.marked) return undefined;
  return {
    fingerprint: {
      mode: 'explicit',
      tools: tools_,
      system: system_,
      ttlSeconds: h.ttlSeconds,
      messages: p.lastMarked,
      prefix: p.all[p.lastMarked]!,
    },
    prefixes: p.all,
  };
}

function automaticBefore(tools: unknown, system: unknown, messages: unknown[], retention: unknown): unknown {
  const h = new HasherBefore();
  const p = h.prefixes(messages);
  return {
    fingerprint: {
      mode: 'automatic',
      tools: h.hash(tools),
      system: h.hash(system),
      messages: messages.length,
      prefix: p.all[messages.length]!,
      ttlSeconds: retention === '24h' ? 86_400 : 300,
    },
    prefixes: p.all,
  };
}

/** Bodies shaped like Claude Code's: marked tools and system blocks, tool_use/tool_result turns. */
function claudeCodeBody(r: () => number): { tools: unknown; system: unknown; messages: unknown[] } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const marker = (): unknown =>
    pick([
      { type: 'ephemeral' },
      { type: 'ephemeral', ttl: '1h' },
      { type: 'ephemeral', ttl: '5m' },
      { ttl: 7 },
      null,
      'x',
    ]);
  const maybeMark = <T extends Record<string, unknown>>(o: T, p: number): T =>
    r() < p ? { ...o, cache_control: marker() } : o;
  const text = (): string => pick(['fix the bug', 'ünïcode 😀', '', 'a "quoted" \\ path', 'x'.repeat(200)]);
  const tools = Array.from({ length: Math.floor(r() * 6) }, (_, i) =>
    maybeMark(
      {
        name: `Tool${i}`,
        description: text(),
        input_schema: {
          type: 'object',
          properties: { command: { type: 'string', description: text() }, n: { type: 'number' } },
          required: ['command'],
          // A schema may name a property cache_control: it is stripped like a marker, as before.
          ...(r() < 0.1 ? { cache_control: { type: 'string' } } : {}),
        },
      },
      0.3,
    ),
  );
  const system =
    r() < 0.2
      ? text()
      : Array.from({ length: 1 + Math.floor(r() * 3) }, () => maybeMark({ type: 'text', text: text() }, 0.4));
  const messages: unknown[] = [];
  const turns = Math.floor(r() * 8);
  for (let t = 0; t < turns; t++) {
    const id = `toolu_${t}`;
    messages.push({
      role: 'user',
      content:
        r() < 0.2
          ? text()
          : [
              ...(t > 0
                ? [
                    maybeMark(
                      {
                        type: 'tool_result',
                        tool_use_id: `toolu_${t - 1}`,
                        is_error: r() < 0.2,
                        content: r() < 0.5 ? text() : [maybeMark({ type: 'text', text: text() }, 0.3)],
                      },
                      0.2,
                    ),
                  ]
                : []),
              maybeMark({ type: 'text', text: text() }, 0.3),
            ],
    });
    messages.push({
      role: 'assistant',
      content: [
        { type: 'thinking', thinking: text(), signature: 'sig' },
        maybeMark(
          { type: 'tool_use', id, name: 'Tool0', input: { command: text(), n: t, nested: [{ a: null }] } },
          0.1,
        ),
      ],
    });
  }
  return { tools, system, messages };
}

/**
 * The facts in the shape they had before (every prefix hash in an array): `prefixAt` now computes a
 * prefix when asked, and must give the same hash for every k, and nothing past the end.
 */
function withPrefixes(facts: CacheFacts | undefined, messages: unknown): unknown {
  if (facts === undefined) return undefined;
  const n = Array.isArray(messages) ? messages.length : 0;
  assert.equal(facts.prefixAt(n + 1), undefined);
  assert.equal(facts.prefixAt(-1), undefined);
  return {
    fingerprint: facts.fingerprint,
    prefixes: Array.from({ length: n + 1 }, (_, k) => facts.prefixAt(k)),
  };
}

describe('prompt-cache fingerprints, unchanged by the walk that replaced the replacer', () => {
  it('gives Claude-Code-shaped bodies the same fingerprint and prefixes as before, byte for byte', () => {
    const r = seededRandom(3);
    let marked = 0;
    for (let i = 0; i < 2000; i++) {
      // Through the wire and back, as the bridge sees a body.
      const b = JSON.parse(JSON.stringify(claudeCodeBody(r))) as ReturnType<typeof claudeCodeBody>;
      const want = explicitBefore(b.tools, b.system, b.messages);
      if (want !== undefined) marked++;
      // Same fields in the same order: the fingerprint is stored on the record as it is.
      const got = withPrefixes(explicitCacheFacts(b.tools, b.system, b.messages), b.messages);
      assert.deepEqual(got, want, `body #${i}`);
      assert.equal(JSON.stringify(got), JSON.stringify(want));
      const auto = withPrefixes(
        automaticCacheFacts(b.tools, b.system, b.messages, i % 2 ? '24h' : undefined),
        b.messages,
      );
      const autoWant = automaticBefore(b.tools, b.system, b.messages, i % 2 ? '24h' : undefined);
      assert.deepEqual(auto, autoWant);
      assert.equal(JSON.stringify(auto), JSON.stringify(autoWant));
    }
    assert.ok(marked > 1000, `${marked} bodies with markers`);
  });

  it('leaves the body it hashes untouched, and keeps odd keys (__proto__, numbers) in their place', () => {
    const wire =
      '{"tools":[{"name":"T","__proto__":{"x":1},"10":"ten","2":"two","cache_control":{"type":"ephemeral"},"z":[1,{"cache_control":{"ttl":"1h"},"k":"v"}]}],' +
      '"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}]}';
    const b = JSON.parse(wire) as { tools: unknown; system: unknown; messages: unknown[] };
    const facts = explicitCacheFacts(b.tools, b.system, b.messages);
    assert.deepEqual(withPrefixes(facts, b.messages), explicitBefore(b.tools, b.system, b.messages));
    assert.equal(facts!.fingerprint.ttlSeconds, 3600);
    assert.equal(JSON.stringify(b), JSON.stringify(JSON.parse(wire)));
  });

  it('tells a changed tool list, system or earlier message apart as before', () => {
    const r = seededRandom(11);
    const b = JSON.parse(JSON.stringify(claudeCodeBody(r))) as ReturnType<typeof claudeCodeBody>;
    const base = automaticCacheFacts(b.tools, b.system, b.messages, undefined);
    const other = automaticCacheFacts(
      [...(b.tools as unknown[]), { name: 'New' }],
      b.system,
      b.messages,
      undefined,
    );
    assert.notEqual(other.fingerprint.tools, base.fingerprint.tools);
    assert.equal(other.fingerprint.system, base.fingerprint.system);
  });
});
