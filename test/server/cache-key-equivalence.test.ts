import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { CacheFacts } from '../../server/core/facts';
import { automaticCacheFacts, explicitCacheFacts } from '../../server/providers/cache-key';
import { seededRandom } from '../helpers/seeded-random';

/**
 * The implementation version-1 fingerprints were made with (JSON.stringify with a replacer). Version
 * 2 hashes another encoding, so its hashes differ; what a cache break's cause rests on must not:
 * two parts hash the same under version 2 exactly when they did under version 1, and every other
 * field of the fingerprint is as it was.
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

/** A message with string content as the one text block it stands for. */
function asBlocks(m: unknown): unknown {
  const o = m as { content?: unknown };
  return typeof o.content === 'string' ? { ...o, content: [{ type: 'text', text: o.content }] } : m;
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

/**
 * Hashes seen under both versions for the same parts: each version-1 hash must always meet the same
 * version-2 hash and the other way round (a one-to-one match), or an equality was gained or lost.
 */
class Correspondence {
  private readonly newOf = new Map<string, string>();
  private readonly oldOf = new Map<string, string>();
  seen = 0;

  same(part: string, before: string | undefined, now: string | undefined, where: string): void {
    assert.equal(now === undefined, before === undefined, where);
    if (before === undefined || now === undefined) return;
    assert.equal(now === '', before === '', `${where}: only an absent part hashes to ''`);
    const o = `${part}:${before}`;
    const n = `${part}:${now}`;
    const knownNew = this.newOf.get(o);
    const knownOld = this.oldOf.get(n);
    if (knownNew === undefined) this.newOf.set(o, n);
    else assert.equal(n, knownNew, `${where}: equal before, different now`);
    if (knownOld === undefined) this.oldOf.set(n, o);
    else assert.equal(o, knownOld, `${where}: different before, equal now`);
    this.seen++;
  }

  get distinct(): number {
    return this.newOf.size;
  }
}

/** The fingerprint without its hashes, for comparing the fields that did not change. */
function shape(facts: unknown): unknown {
  if (facts === undefined) return undefined;
  const {
    tools: _t,
    system: _s,
    prefix: _p,
    v: _v,
    ...rest
  } = (facts as { fingerprint: Record<string, unknown> }).fingerprint;
  return rest;
}

describe('prompt-cache fingerprints, version 3: the equalities of version 1', () => {
  it('hashes Claude-Code-shaped bodies equal exactly where version 1 did, every other field as before', () => {
    const r = seededRandom(3);
    const match = new Correspondence();
    let marked = 0;
    for (let i = 0; i < 2000; i++) {
      // Through the wire and back, as the bridge sees a body.
      const b = JSON.parse(JSON.stringify(claudeCodeBody(r))) as ReturnType<typeof claudeCodeBody>;
      // Version 3 reads a message's string content as its one text block: version 1 of that form.
      const blocks = b.messages.map(asBlocks);
      const want = explicitBefore(b.tools, b.system, blocks) as
        | { fingerprint: Record<string, string>; prefixes: string[] }
        | undefined;
      const facts = explicitCacheFacts(b.tools, b.system, b.messages);
      const got = withPrefixes(facts, b.messages) as typeof want;
      assert.deepEqual(shape(got), shape(want), `body #${i}`);
      if (want !== undefined && got !== undefined) {
        marked++;
        assert.equal(facts!.fingerprint.v, 3);
        match.same('tools', want.fingerprint.tools, got.fingerprint.tools, `body #${i} tools`);
        match.same('system', want.fingerprint.system, got.fingerprint.system, `body #${i} system`);
        match.same('prefix', want.fingerprint.prefix, got.fingerprint.prefix, `body #${i} prefix`);
        for (const [k, p] of want.prefixes.entries())
          match.same('prefix', p, got.prefixes[k], `body #${i} prefix of ${k}`);
      }
      const retention = i % 2 ? '24h' : undefined;
      const auto = withPrefixes(
        automaticCacheFacts(b.tools, b.system, b.messages, retention),
        b.messages,
      ) as {
        fingerprint: Record<string, string>;
        prefixes: string[];
      };
      const autoWant = automaticBefore(b.tools, b.system, blocks, retention) as typeof auto;
      assert.deepEqual(shape(auto), shape(autoWant));
      match.same('tools', autoWant.fingerprint.tools, auto.fingerprint.tools, `body #${i} auto tools`);
      match.same('system', autoWant.fingerprint.system, auto.fingerprint.system, `body #${i} auto system`);
      for (const [k, p] of autoWant.prefixes.entries())
        match.same('prefix', p, auto.prefixes[k], `body #${i} auto prefix of ${k}`);
    }
    assert.ok(marked > 1000, `${marked} bodies with markers`);
    // Parts repeat across bodies (the generator draws from few texts): equalities were put to the test.
    assert.ok(match.distinct < match.seen / 2, `${match.distinct} distinct parts in ${match.seen}`);
  });

  it('leaves the body it hashes untouched, and keeps odd keys (__proto__, numbers) in their place', () => {
    const wire =
      '{"tools":[{"name":"T","__proto__":{"x":1},"10":"ten","2":"two","cache_control":{"type":"ephemeral"},"z":[1,{"cache_control":{"ttl":"1h"},"k":"v"}]}],' +
      '"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}]}';
    const b = JSON.parse(wire) as { tools: unknown; system: unknown; messages: unknown[] };
    const facts = explicitCacheFacts(b.tools, b.system, b.messages);
    assert.deepEqual(
      shape(withPrefixes(facts, b.messages)),
      shape(explicitBefore(b.tools, b.system, b.messages)),
    );
    assert.equal(facts!.fingerprint.ttlSeconds, 3600);
    assert.equal(JSON.stringify(b), JSON.stringify(JSON.parse(wire)));
    // The same tool with its keys in another order, or __proto__ as an ordinary key dropped, is another tool.
    const reordered = JSON.parse(
      wire.replace('"10":"ten","2":"two"', '"2":"two","10":"ten"').replace('"__proto__":{"x":1},', ''),
    ) as typeof b;
    assert.notEqual(
      explicitCacheFacts(reordered.tools, b.system, b.messages)!.fingerprint.tools,
      facts!.fingerprint.tools,
    );
  });

  it('tells strings apart that differ only in a lone surrogate, or in where a string ends', () => {
    const hashOfTools = (tools: unknown) =>
      automaticCacheFacts(tools, undefined, [], undefined).fingerprint.tools;
    const a = hashOfTools(['\ud800']);
    assert.notEqual(a, hashOfTools(['\ud801']));
    assert.notEqual(a, hashOfTools(['\ufffd']));
    assert.notEqual(hashOfTools(['ab', 'c']), hashOfTools(['a', 'bc']));
    assert.notEqual(hashOfTools({ ab: 'c' }), hashOfTools({ a: 'bc' }));
    assert.notEqual(hashOfTools([1, 2]), hashOfTools([12]));
    assert.notEqual(hashOfTools(['1']), hashOfTools([1]));
    assert.equal(hashOfTools(['\ud83d\ude00']), hashOfTools(['😀']));
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
