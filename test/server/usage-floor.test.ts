import assert from 'node:assert/strict';
import type { ResponseFacts } from '../../server/core/facts';
import { HIDDEN_TOKENS_PER_SECOND, type StreamSeen, withUsageFloor } from '../../server/proxy/usage-floor';
import type { BudgetStatus } from '../../shared/spend';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { OpenAIMock } from '../helpers/openai-mock';

/**
 * Providers report a stream's usage at its end. A member who reads the answer and leaves before
 * that event must not be recorded (and charged) as having used nothing: docs/spend.md, "Streams
 * without usage".
 */
describe('usage of a stream whose usage never reached the bridge', function () {
  this.timeout(30_000);
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;
  let dev: { key: string; user: { id: string; email: string } };

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    tb = await startBridge(anthropic.url, { AIBRIDGE_OPENAI_BASE_URL: openai.url });
    dev = await tb.addUser('leaver@example.com', { team: 'floor' });
  });
  after(async () => {
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  /** Reads a stream until `enough` of its text holds `want` SSE data lines, then leaves. */
  async function readThenLeave(path: string, body: unknown, want: RegExp, enough: number): Promise<number> {
    const ac = new AbortController();
    const res = await fetch(tb.url + path, {
      method: 'POST',
      headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: ac.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = '';
    let seen = 0;
    while (seen < enough) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
      seen = text.split('\n').filter((l) => want.test(l)).length;
    }
    ac.abort();
    return seen;
  }

  it('Chat Completions: a client gone before the usage chunk is charged the body as input and a token per chunk it read', async () => {
    const budget = await tb.api<BudgetStatus>('PUT', '/api/v1/budgets', tb.adminKey, {
      scope: 'user',
      subject: dev.user.email,
      period: 'month',
      limitUsd: 100,
      action: 'block',
    });
    assert.equal(budget.status, 200, JSON.stringify(budget.body));
    openai.next({ kind: 'drip', count: 400, delayMs: 5 });
    const n = (await tb.interceptions(0, dev.key)).length;
    const prompt = 'Write a long story. '.repeat(100);
    const body = { model: 'gpt-5', stream: true, messages: [{ role: 'user', content: prompt }] };
    const read = await readThenLeave('/openai/v1/chat/completions', body, /"content":"\d+ "/, 30);
    assert.ok(read >= 30, `read ${read} chunks`);
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    assert.equal(rec.status, 'client_aborted');
    assert.equal(rec.usageEstimated, true);
    // The bridge asked for usage (include_usage) and the body is ~2 KB: a quarter of it as tokens.
    assert.ok(rec.usage.input >= Math.floor(JSON.stringify(body).length / 4), `input ${rec.usage.input}`);
    assert.ok(rec.usage.output >= read, `output ${rec.usage.output} for ${read} chunks read`);
    assert.ok(rec.costUsd !== null && rec.costUsd > 0, `cost ${rec.costUsd}`);
    const status = await eventually(async () => {
      const s = await tb.api<BudgetStatus>('GET', `/api/v1/budgets/${budget.body.id}`, tb.adminKey);
      return s.body.spentUsd > 0 ? s.body : undefined;
    });
    assert.ok(
      Math.abs(status.spentUsd - rec.costUsd) < 1e-6,
      `budget ${JSON.stringify(status)} record ${rec.costUsd}`,
    );
  });

  it('Anthropic Messages: the input message_start reported is kept; the output is at least the deltas relayed', async () => {
    anthropic.next({ kind: 'drip', count: 400, delayMs: 5 });
    const n = (await tb.interceptions(0, dev.key)).length;
    const body = {
      model: 'claude-sonnet-4-6',
      max_tokens: 4000,
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    };
    const read = await readThenLeave('/anthropic/v1/messages', body, /^event: content_block_delta/, 20);
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    assert.equal(rec.status, 'client_aborted');
    assert.equal(rec.usageEstimated, true);
    assert.equal(rec.usage.input, 25, 'as message_start said');
    assert.ok(rec.usage.output >= read, `output ${rec.usage.output} for ${read} deltas read`);
  });

  it('a client gone once the answer was shown is charged the output generated before it (hidden reasoning), at a low rate, up to max_tokens', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    // The provider works 1.5 s before its first visible delta: thinking the client asked to hide.
    anthropic.next({ kind: 'gated', gate, hiddenMs: 1500 });
    const n = (await tb.interceptions(0, dev.key)).length;
    const body = {
      model: 'claude-sonnet-4-6',
      max_tokens: 4000,
      stream: true,
      thinking: { type: 'enabled', budget_tokens: 2000, display: 'omitted' },
      messages: [{ role: 'user', content: 'hi' }],
    };
    await readThenLeave('/anthropic/v1/messages', body, /^event: content_block_delta/, 1);
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    release();
    assert.equal(rec.status, 'client_aborted');
    assert.equal(rec.usageEstimated, true);
    // 20 tokens a second for the 1.5 s before the first delta (HIDDEN_TOKENS_PER_SECOND), as reasoning.
    assert.ok(rec.usage.reasoning >= 29 && rec.usage.reasoning < 60, JSON.stringify(rec.usage));
    assert.ok(rec.usage.output >= rec.usage.reasoning + 1, JSON.stringify(rec.usage));
    assert.ok(rec.costUsd! > 0);
  });

  it('a stream whose provider connection broke after content was relayed is floored too, not recorded as free', async () => {
    openai.next({ kind: 'cut', count: 12 });
    const n = (await tb.interceptions(0, dev.key)).length;
    const body = {
      model: 'gpt-5',
      stream: true,
      messages: [{ role: 'user', content: 'Tell me. '.repeat(200) }],
    };
    const res = await fetch(`${tb.url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /"content":"11 "/, 'the client read all twelve chunks');
    assert.match(text, /upstream_unreachable|error/, 'then an error event');
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    assert.equal(rec.status, 'error');
    assert.equal(rec.usageEstimated, true);
    assert.ok(rec.usage.input >= Math.floor(JSON.stringify(body).length / 4), `input ${rec.usage.input}`);
    assert.ok(rec.usage.output >= 12, `output ${rec.usage.output}`);
    assert.ok(rec.costUsd !== null && rec.costUsd > 0, `cost ${rec.costUsd}`);
  });

  it('a client gone while the provider works on a whole answer (before its headers) is charged the body as input, not recorded as free', async () => {
    anthropic.next({ kind: 'hang' });
    const n = (await tb.interceptions(0, dev.key)).length;
    const seen = anthropic.messageRequests().length;
    const body = {
      model: 'claude-sonnet-4-6',
      max_tokens: 4000,
      messages: [{ role: 'user', content: 'a long prompt '.repeat(2000) }],
    };
    const ac = new AbortController();
    const res = fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: ac.signal,
    }).catch(() => undefined);
    // The provider has the prompt and is generating: the client gives up before any answer.
    await eventually(async () => (anthropic.messageRequests().length > seen ? true : undefined), {
      what: 'the provider to have the request',
    });
    ac.abort();
    await res;
    await eventually(async () => (anthropic.messageRequests().at(-1)?.aborted ? true : undefined), {
      what: 'the upstream call cancelled',
    });
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    assert.equal(rec.status, 'client_aborted');
    assert.equal(rec.usageEstimated, true);
    assert.equal(rec.usage.input, Math.ceil(JSON.stringify(body).length / 4));
    assert.ok(rec.costUsd !== null && rec.costUsd > 0, `cost ${rec.costUsd}`);
  });

  it('a whole answer the bridge cannot read is floored from its size and the body’s, not recorded as free', async () => {
    anthropic.next({ kind: 'unreadable', bytes: 4000 });
    const n = (await tb.interceptions(0, dev.key)).length;
    const body = {
      model: 'claude-sonnet-4-6',
      max_tokens: 4000,
      messages: [{ role: 'user', content: 'hi' }],
    };
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    assert.equal(res.status, 200);
    assert.equal((await res.arrayBuffer()).byteLength, 4000, 'relayed as it came');
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    assert.equal(rec.usageEstimated, true);
    assert.equal(rec.usage.output, 1000);
    assert.equal(rec.usage.input, Math.ceil(JSON.stringify(body).length / 4));
    assert.ok(rec.costUsd !== null && rec.costUsd > 0);

    // With AIBRIDGE_AUDIT_ACK=stored (PostgreSQL's default) a JSON answer is read whole before it
    // is sent: the same answer takes that path.
    const acked = await startBridge(anthropic.url, { AIBRIDGE_AUDIT_ACK: 'stored' });
    try {
      const other = await acked.addUser('acked@example.com');
      anthropic.next({ kind: 'unreadable', bytes: 4000 });
      const r = await fetch(`${acked.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${other.key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      assert.equal(r.status, 200);
      assert.equal((await r.arrayBuffer()).byteLength, 4000);
      const got = (await acked.interceptions(1, other.key))[0]!;
      assert.equal(got.usageEstimated, true);
      assert.equal(got.usage.output, 1000);
      assert.ok(got.costUsd !== null && got.costUsd > 0);
    } finally {
      await acked.close();
    }
  });

  it('a stream that ends without usage (a compatible server ignoring include_usage) is floored and marked; one with usage is as reported', async () => {
    openai.next({ kind: 'text', text: 'One two three.', omitUsage: true });
    const n = (await tb.interceptions(0, dev.key)).length;
    const res = await fetch(`${tb.url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5', stream: true, messages: [{ role: 'user', content: 'count' }] }),
    });
    await res.text();
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    assert.equal(rec.status, 'ok');
    assert.equal(rec.usageEstimated, true);
    assert.ok(rec.usage.input > 0 && rec.usage.output >= 2, JSON.stringify(rec.usage));

    const full = await fetch(`${tb.url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5', stream: true, messages: [{ role: 'user', content: 'count' }] }),
    });
    await full.text();
    const reported = (await tb.interceptions(n + 2, dev.key))[0]!;
    assert.equal(reported.usageEstimated, undefined);
    assert.deepEqual(reported.usage, { input: 30, cacheRead: 100, cacheWrite: 0, output: 40, reasoning: 16 });
  });
});

describe('the hidden-output floor (withUsageFloor)', () => {
  const facts = (output: number, reasoning = 0): ResponseFacts => ({
    usage: { input: 100, output, cacheRead: 0, cacheWrite: 0, reasoning },
    toolCalls: [],
    model: null,
    error: null,
  });
  const seen = (over: Partial<StreamSeen>): StreamSeen => ({
    contentEvents: 3,
    bodyBytes: 400,
    ended: 'abandoned',
    ...over,
  });

  it('adds HIDDEN_TOKENS_PER_SECOND for the time before the first shown output, as reasoning, only when cut', () => {
    const cut = withUsageFloor(facts(1), seen({ hiddenMs: 10_000 }));
    assert.equal(cut.usage.reasoning, 10 * HIDDEN_TOKENS_PER_SECOND);
    assert.equal(cut.usage.output, 3 + 10 * HIDDEN_TOKENS_PER_SECOND);
    const whole = withUsageFloor(facts(40, 5), seen({ hiddenMs: 10_000, ended: 'complete' }));
    assert.deepEqual(whole.usage, facts(40, 5).usage, 'a stream that ended reports its own usage');
  });

  it('never passes the output cap, and keeps reasoning the provider already reported when it is more', () => {
    const capped = withUsageFloor(facts(1), seen({ hiddenMs: 600_000, maxOutputTokens: 500 }));
    assert.equal(capped.usage.output, 500);
    assert.equal(capped.usage.reasoning, 497);
    const reported = withUsageFloor(facts(900, 800), seen({ hiddenMs: 1000 }));
    assert.equal(reported.usage.reasoning, 800);
    assert.equal(reported.usage.output, 900);
  });
});
