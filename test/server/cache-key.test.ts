import assert from 'node:assert/strict';
import { causeOf, judge } from '../../server/audit/cache-breaks';
import { chatCacheFacts, explicitCacheFacts } from '../../server/providers/cache-key';
import type { CacheFingerprint } from '../../shared/interception';
import type { Usage } from '../../shared/usage';

const TOOLS = [{ name: 'Bash', input_schema: { type: 'object' } }];
const SYSTEM = [{ type: 'text', text: 'You are Claude Code.', cache_control: { type: 'ephemeral' } }];
const marked = (text: string, ttl?: string): unknown => ({
  role: 'user',
  content: [{ type: 'text', text, cache_control: { type: 'ephemeral', ...(ttl ? { ttl } : {}) } }],
});
const plain = (text: string): unknown => ({ role: 'user', content: [{ type: 'text', text }] });

describe('prompt-cache fingerprints', () => {
  it('finds the previous turn’s cached prefix intact although the agent moved its cache marker', () => {
    const one = explicitCacheFacts(TOOLS, SYSTEM, [marked('fix the bug')])!;
    const two = explicitCacheFacts(TOOLS, SYSTEM, [
      plain('fix the bug'),
      { role: 'assistant', content: 'done' },
      marked('now the tests'),
    ])!;
    assert.equal(one.fingerprint.messages, 1);
    assert.equal(two.fingerprint.messages, 3);
    assert.equal(two.prefixAt(one.fingerprint.messages), one.fingerprint.prefix);
    assert.equal(two.fingerprint.tools, one.fingerprint.tools);
    assert.equal(two.fingerprint.system, one.fingerprint.system);
    assert.equal(one.fingerprint.ttlSeconds, 300);

    const edited = explicitCacheFacts(TOOLS, SYSTEM, [plain('fix the other bug'), marked('now the tests')])!;
    assert.notEqual(edited.prefixAt(1), one.fingerprint.prefix);
  });

  it('reads the longest TTL a marker asks for, and gives no fingerprint to a request that caches nothing', () => {
    assert.equal(explicitCacheFacts(TOOLS, 'sys', [marked('hi', '1h')])!.fingerprint.ttlSeconds, 3600);
    assert.equal(explicitCacheFacts(TOOLS, 'sys', [plain('hi')]), undefined);
    // Only the tools marked: the cached prefix holds no message.
    const toolsOnly = explicitCacheFacts([{ ...TOOLS[0], cache_control: { type: 'ephemeral' } }], 'sys', [
      plain('hi'),
    ])!;
    assert.equal(toolsOnly.fingerprint.messages, 0);
  });

  it('splits a Chat Completions system prompt from the automatic prefix', () => {
    const a = chatCacheFacts({
      messages: [
        { role: 'system', content: 'A' },
        { role: 'user', content: 'hi' },
      ],
    });
    const b = chatCacheFacts({
      messages: [
        { role: 'system', content: 'B' },
        { role: 'user', content: 'hi' },
      ],
    });
    assert.equal(a.fingerprint.mode, 'automatic');
    assert.equal(a.fingerprint.messages, 1);
    assert.notEqual(a.fingerprint.system, b.fingerprint.system);
    assert.equal(a.fingerprint.prefix, b.fingerprint.prefix);
  });
});

describe('prompt-cache break judgement', () => {
  const key: CacheFingerprint = {
    mode: 'explicit',
    tools: 't',
    system: 's',
    messages: 2,
    prefix: 'p',
    ttlSeconds: 300,
  };
  const usage = (over: Partial<Usage>): Usage => ({
    input: 3,
    output: 20,
    cacheRead: 0,
    cacheWrite: 0,
    reasoning: 0,
    ...over,
  });
  const prev = {
    id: 'int_prev',
    model: 'm',
    startedAt: '2026-11-10T09:00:00.000Z',
    usage: usage({ cacheRead: 9_000, cacheWrite: 1_000 }),
    cacheKey: key,
  };
  const cur = {
    ...prev,
    id: 'int_cur',
    startedAt: '2026-11-10T09:01:00.000Z',
    usage: usage({ cacheWrite: 10_500 }),
  };
  const price = (_p: string, _m: string | null, u: Usage): number =>
    (u.input * 3 + u.output * 15 + u.cacheRead * 0.3 + u.cacheWrite * 3.75) / 1e6;

  it('names `unknown` when nothing changed (the provider dropped the cache early) and prices the rewrite', () => {
    const brk = judge(prev, cur, (k) => ['', 'x', 'p'][k], 'anthropic', price);
    assert.deepEqual(brk, {
      cause: 'unknown',
      excessUsd: Math.round(((10_000 * (3.75 - 0.3)) / 1e6) * 1e6) / 1e6,
      tokens: 10_000,
      previousInterceptionId: 'int_prev',
    });
    assert.equal(
      causeOf(prev, cur, (k) => ['', 'x', 'q'][k]),
      'context_edited',
    );
    assert.equal(causeOf(prev, { ...cur, startedAt: '2026-11-10T09:05:01.000Z' }, undefined), 'ttl_expired');
  });

  it('blames no change across fingerprint versions (a turn recorded before the upgrade), and does within one', () => {
    // A version-2 turn after a version-1 one: every hash differs, none of it says what changed.
    const upgraded = { ...cur, cacheKey: { ...key, tools: 't2', system: 's2', prefix: 'p2', v: 2 } };
    assert.equal(
      causeOf(prev, upgraded, () => 'p2'),
      'unknown',
    );
    assert.equal(
      causeOf(prev, { ...upgraded, startedAt: '2026-11-10T09:05:01.000Z' }, undefined),
      'ttl_expired',
    );
    // Both version 2: a changed hash is a change again.
    const prev2 = { ...prev, cacheKey: { ...key, v: 2 } };
    assert.equal(
      causeOf(prev2, upgraded, () => 'p'),
      'tools_changed',
    );
    assert.equal(
      causeOf(prev2, { ...cur, cacheKey: { ...key, v: 2 } }, (k) => ['', 'x', 'q'][k]),
      'context_edited',
    );
  });

  it('is no break when the cache was read, when nothing was cached before, or when the price is unknown it says so', () => {
    assert.equal(
      judge(prev, { ...cur, usage: usage({ cacheRead: 10_000, cacheWrite: 500 }) }, undefined, 'a', price),
      null,
    );
    assert.equal(judge({ ...prev, usage: usage({ input: 10_000 }) }, cur, undefined, 'a', price), null);
    assert.equal(judge(prev, cur, undefined, 'a', () => null)?.excessUsd, null);
  });
});
