import assert from 'node:assert/strict';
import { usd } from '../../server/spend/budgets';
import type { Alert, BudgetStatus, UsageReport, UsageRow } from '../../shared/spend';
import { AnthropicMock, DEFAULT_USAGE } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { OPENAI_USAGE, OpenAIMock } from '../helpers/openai-mock';
import { type Received, WebhookReceiver } from '../helpers/webhook-receiver';

/** USD per million tokens, as the bundled genai-prices data has them (the test states them independently). */
const SONNET_45 = { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 };
const GPT_4O = { input: 2.5, output: 10, cacheRead: 1.25 };
const GPT_5 = { input: 1.25, output: 10, cacheRead: 0.125 };

const ANTHROPIC_COST =
  (DEFAULT_USAGE.input_tokens * SONNET_45.input +
    DEFAULT_USAGE.output_tokens * SONNET_45.output +
    DEFAULT_USAGE.cache_read_input_tokens * SONNET_45.cacheRead +
    DEFAULT_USAGE.cache_creation_input_tokens * SONNET_45.cacheWrite) /
  1e6;
const uncached = OPENAI_USAGE.input - OPENAI_USAGE.cached;
const CHAT_COST =
  (uncached * GPT_4O.input + OPENAI_USAGE.cached * GPT_4O.cacheRead + OPENAI_USAGE.output * GPT_4O.output) /
  1e6;
const RESPONSES_COST =
  (uncached * GPT_5.input + OPENAI_USAGE.cached * GPT_5.cacheRead + OPENAI_USAGE.output * GPT_5.output) / 1e6;

interface Sent {
  status: number;
  headers: Headers;
  text: string;
}

async function post(tb: TestBridge, route: string, key: string, body: unknown): Promise<Sent> {
  const res = await fetch(tb.url + route, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'anthropic-version': '2023-06-01',
      authorization: `Bearer ${key}`,
    },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

const messages = (model: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model,
  max_tokens: 64,
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

function close(a: number, b: number): void {
  assert.ok(Math.abs(a - b) < 1e-9, `${a} ≠ ${b}`);
}

describe('spend and governance', function () {
  this.timeout(60_000);
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let hook: WebhookReceiver;
  let tb: TestBridge;

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    hook = await new WebhookReceiver().start();
    tb = await startBridge(anthropic.url, {
      AIBRIDGE_OPENAI_BASE_URL: openai.url,
      AIBRIDGE_ALERT_WEBHOOK_URL: hook.url,
      AIBRIDGE_ALERT_WEBHOOK_BACKOFF_MS: '20',
      // Anomaly rules are tested on their own below; here they would fire on every new user.
      AIBRIDGE_ANOMALY_MIN_USD: '1000',
      AIBRIDGE_BURST_RPM: '0',
    });
  });
  after(async () => {
    await tb.close();
    await hook.stop();
    await openai.stop();
    await anthropic.stop();
  });

  describe('cost', () => {
    it('prices each API from the bundled price data, token kind by token kind', async () => {
      const dev = await tb.addUser('cost@example.com', { team: 'cost' });
      assert.equal(
        (await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-sonnet-4-5'))).status,
        200,
      );
      let rec = (await tb.interceptions(1, dev.key))[0]!;
      assert.equal(rec.priceKnown, true);
      close(rec.costUsd!, ANTHROPIC_COST);

      const chat = await post(tb, '/openai/v1/chat/completions', dev.key, {
        model: 'gpt-4o',
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      });
      assert.equal(chat.status, 200);
      rec = (await tb.interceptions(2, dev.key))[0]!;
      assert.equal(rec.api, 'chat.completions');
      close(rec.costUsd!, CHAT_COST);

      const resp = await post(tb, '/openai/v1/responses', dev.key, { model: 'gpt-5', input: 'hi' });
      assert.equal(resp.status, 200);
      rec = (await tb.interceptions(3, dev.key))[0]!;
      assert.equal(rec.api, 'responses');
      close(rec.costUsd!, RESPONSES_COST);
    });

    it('prices one-hour cache writes and web searches at their own prices, whole answers and streams alike', async () => {
      const dev = await tb.addUser('cache1h@example.com');
      const usage = {
        input_tokens: 1000,
        output_tokens: 1000,
        cache_read_input_tokens: 0,
        cache_creation_input_tokens: 100_000,
        cache_creation: { ephemeral_5m_input_tokens: 40_000, ephemeral_1h_input_tokens: 60_000 },
        server_tool_use: { web_search_requests: 7 },
      };
      // Sonnet 4.5: $3.75 per million 5-minute writes, $6 one-hour, $10 per thousand searches.
      const expected =
        (1000 * SONNET_45.input + 1000 * SONNET_45.output + 40_000 * SONNET_45.cacheWrite + 60_000 * 6) /
          1e6 +
        (7 * 10) / 1e3;
      for (const stream of [false, true]) {
        anthropic.next({ kind: 'text', usage });
        const sent = await post(
          tb,
          '/anthropic/v1/messages',
          dev.key,
          messages('claude-sonnet-4-5', { stream }),
        );
        assert.equal(sent.status, 200);
        const rec = await eventually(async () =>
          (await tb.interceptions(stream ? 2 : 1, dev.key)).find((r) => r.streamed === stream),
        );
        assert.equal(rec.usage.cacheWrite, 100_000);
        assert.equal(rec.usage.cacheWrite1h, 60_000);
        assert.equal(rec.usage.webSearches, 7);
        close(rec.costUsd!, expected);
      }
    });

    it('prices OpenAI Responses web and file searches per call, whole answers and streams alike', async () => {
      const dev = await tb.addUser('hosted-searches@example.com');
      // GPT-5: $10 per thousand web searches, $2.50 per thousand file searches, on top of the tokens.
      const expected = RESPONSES_COST + (2 * 10) / 1e3 + (1 * 2.5) / 1e3;
      for (const stream of [false, true]) {
        openai.next({ kind: 'hosted-searches' });
        const sent = await post(tb, '/openai/v1/responses', dev.key, {
          model: 'gpt-5',
          input: 'what changed?',
          tools: [{ type: 'web_search' }, { type: 'file_search', vector_store_ids: ['vs_1'] }],
          max_output_tokens: 100,
          stream,
        });
        assert.equal(sent.status, 200);
        const rec = await eventually(async () =>
          (await tb.interceptions(1, dev.key)).find((r) => r.streamed === stream),
        );
        assert.equal(rec.usage.webSearches, 2);
        assert.equal(rec.usage.fileSearches, 1);
        close(rec.costUsd!, expected);
      }
    });

    it('flags an unknown model instead of counting it as $0, until an admin prices it', async () => {
      const dev = await tb.addUser('unknown@example.com', { team: 'unknown' });
      const model = 'claude-from-the-future-9';
      assert.equal((await post(tb, '/anthropic/v1/messages', dev.key, messages(model))).status, 200);
      const rec = (await tb.interceptions(1, dev.key))[0]!;
      assert.equal(rec.costUsd, null);
      assert.equal(rec.priceKnown, false);

      const unknown = await tb.api<{ items: { model: string; requests: number }[] }>(
        'GET',
        '/api/v1/prices/unknown',
        tb.adminKey,
      );
      assert.deepEqual(
        unknown.body.items.filter((u) => u.model === model).map((u) => u.requests),
        [1],
      );
      const metrics = await fetch(`${tb.url}/metrics`, {
        headers: { authorization: `Bearer ${tb.adminKey}` },
      });
      assert.equal(metrics.status, 200);
      assert.match(
        await metrics.text(),
        new RegExp(`aibridge_unknown_price_requests_total\\{provider="anthropic",model="${model}"\\} 1`),
      );
      const usage = await tb.api<UsageReport>('GET', '/api/v1/usage?groupBy=user', tb.adminKey);
      const row = usage.body.rows.find((r) => r.key === 'unknown@example.com')!;
      assert.equal(row.unpricedRequests, 1);
      assert.equal(row.costUsd, 0, 'the unknown request adds nothing to the sum, and is counted apart');

      const put = await tb.api('PUT', `/api/v1/prices/${model}`, tb.adminKey, {
        input_mtok: 10,
        output_mtok: 50,
        cache_read_mtok: 1,
        cache_write_mtok: 12.5,
      });
      assert.equal(put.status, 200);
      assert.equal((await post(tb, '/anthropic/v1/messages', dev.key, messages(model))).status, 200);
      const priced = (await tb.interceptions(2, dev.key))[0]!;
      assert.equal(priced.priceKnown, true);
      close(
        priced.costUsd!,
        (DEFAULT_USAGE.input_tokens * 10 +
          DEFAULT_USAGE.output_tokens * 50 +
          DEFAULT_USAGE.cache_read_input_tokens * 1 +
          DEFAULT_USAGE.cache_creation_input_tokens * 12.5) /
          1e6,
      );
      const after = await tb.api<{ items: { model: string }[] }>(
        'GET',
        '/api/v1/prices/unknown',
        tb.adminKey,
      );
      assert.ok(!after.body.items.some((u) => u.model === model), 'a priced model leaves the unknown list');

      const bad = await tb.api<{ error: { code: string } }>('PUT', '/api/v1/prices/x', tb.adminKey, {
        input_mtok: -1,
        output_mtok: 1,
      });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'invalid_request');
    });
  });

  describe('budgets', () => {
    /**
     * Waves of 20 parallel requests, all open at once (the mock holds them until released), until
     * a whole wave is refused. Every wave must be stopped short by reservations.
     */
    async function waves(key: string, body: Record<string, unknown>): Promise<Sent[]> {
      const answers: Sent[] = [];
      for (let wave = 0; wave < 20; wave++) {
        let release!: () => void;
        const gate = new Promise<void>((r) => {
          release = r;
        });
        anthropic.clear();
        for (let i = 0; i < 20; i++) anthropic.next({ kind: 'gated', gate });
        const reachedBefore = anthropic.messageRequests().length;
        let settled = 0;
        const all = Array.from({ length: 20 }, () =>
          post(tb, '/anthropic/v1/messages', key, body).then((r) => {
            settled++;
            return r;
          }),
        );
        // Released once every request of the wave is held at the upstream or already refused (the held
        // ones cannot answer before), so all admitted streams are open together.
        await eventually(() => anthropic.messageRequests().length - reachedBefore + settled === 20, {
          what: 'the whole wave admitted or refused',
        });
        release();
        const done = await Promise.all(all);
        anthropic.clear();
        answers.push(...done);
        const admitted = done.filter((r) => r.status === 200).length;
        assert.ok(admitted < 20, 'reservations stop a wave of parallel streams');
        if (admitted === 0) break;
      }
      return answers;
    }

    /** A blocking daily budget of `limitUsd` for one user. */
    const blockUser = (email: string, limitUsd: number) =>
      tb.api<BudgetStatus>('PUT', '/api/v1/budgets', tb.adminKey, {
        scope: 'user',
        subject: email,
        period: 'day',
        limitUsd,
        action: 'block',
      });

    it('a blocking budget under 20 parallel streams stops within one request of its limit; refusals never reach upstream', async () => {
      const dev = await tb.addUser('parallel@example.com', { team: 'parallel' });
      const limit = ANTHROPIC_COST * 5.5;
      const put = await blockUser('parallel@example.com', limit);
      assert.equal(put.status, 200);
      assert.equal(put.body.spentUsd, 0);

      const upstreamBefore = anthropic.messageRequests().length;
      const answers = await waves(dev.key, messages('claude-sonnet-4-5', { stream: true }));
      const ok = answers.filter((r) => r.status === 200).length;
      assert.ok(ok >= 1);
      assert.equal(
        anthropic.messageRequests().length - upstreamBefore,
        ok,
        'refused requests never reached upstream',
      );

      const refused = answers.find((r) => r.status === 429)!;
      const err = JSON.parse(refused.text) as { type: string; error: { type: string; message: string } };
      assert.equal(err.type, 'error');
      assert.equal(err.error.type, 'rate_limit_error');
      assert.match(err.error.message, new RegExp(put.body.id));
      assert.match(err.error.message, /resets at \d{4}-\d\d-\d\dT/);
      // The reset in its own header; retry-after only for a wait of a minute or less (a client that
      // honours it literally waits that long); a retry changes nothing until then.
      const resets = refused.headers.get('x-aibridge-budget-resets-at') ?? '';
      assert.ok(Date.parse(resets) > Date.now(), resets);
      assert.match(err.error.message, new RegExp(`resets at ${resets.replace(/\./g, '\\.')}`));
      const wait = Number(refused.headers.get('retry-after') ?? 'NaN');
      if ((Date.parse(resets) - Date.now()) / 1000 > 61)
        assert.equal(refused.headers.get('retry-after'), null);
      else assert.ok(wait >= 1 && wait <= 60);
      assert.equal(refused.headers.get('x-should-retry'), 'false');
      assert.equal(
        refused.headers.get('x-aibridge-error-code'),
        'budget_exceeded',
        'the code, which the body lacks',
      );
      assert.match(err.error.message, /^The daily budget/);

      const status = await tb.api<BudgetStatus>('GET', `/api/v1/budgets/${put.body.id}`, tb.adminKey);
      const spent = status.body.spentUsd;
      assert.ok(spent <= limit + ANTHROPIC_COST + 1e-9, `spent ${spent} > limit ${limit} + one request`);
      assert.ok(spent >= limit - 1e-9, `spent ${spent}: the budget stopped before its limit`);
      assert.equal(status.body.reservedUsd, 0);
      const recs = await tb.interceptions(answers.length, dev.key);
      const refusedRecs = recs.filter((r) => r.error?.type === 'budget_exceeded');
      assert.equal(refusedRecs.length, answers.length - ok, 'every refusal is on the record');
      assert.ok(refusedRecs.every((r) => r.httpStatus === 429 && r.costUsd === 0));
    });

    it('a model name the price table does not know, answered as a priced model, stops within one request too', async () => {
      // An Azure deployment's name, an alias: nothing prices the request, but the answer names a
      // priced model and the request is charged at its price. It reserves the floor, so parallel
      // requests cannot all slip under the limit at $0 each.
      const dev = await tb.addUser('unpriced-race@example.com');
      const limit = ANTHROPIC_COST * 5.5;
      const put = await blockUser('unpriced-race@example.com', limit);
      anthropic.answerModel = 'claude-sonnet-4-5';
      let answers: Sent[];
      try {
        answers = await waves(dev.key, messages('my-private-deployment', { stream: true }));
      } finally {
        anthropic.answerModel = undefined;
      }
      assert.ok(answers.some((r) => r.status === 200));
      const status = await tb.api<BudgetStatus>('GET', `/api/v1/budgets/${put.body.id}`, tb.adminKey);
      assert.ok(
        status.body.spentUsd >= limit - 1e-9,
        `spent ${status.body.spentUsd}: charged at the answer's price`,
      );
      assert.ok(
        status.body.spentUsd <= limit + ANTHROPIC_COST + 1e-9,
        `spent ${status.body.spentUsd} > limit ${limit} + one request`,
      );
      assert.equal(status.body.reservedUsd, 0);
    });

    it('refuses in OpenAI shape on OpenAI routes, and a team budget covers every member', async () => {
      const a = await tb.addUser('team-a@example.com', { team: 'capped' });
      const b = await tb.addUser('team-b@example.com', { team: 'capped' });
      const put = await tb.api<BudgetStatus>('PUT', '/api/v1/budgets', tb.adminKey, {
        scope: 'team',
        subject: 'capped',
        period: 'month',
        limitUsd: CHAT_COST * 1.5,
        action: 'block',
      });
      assert.equal(put.status, 200);
      const chat = { model: 'gpt-4o', max_tokens: 40, messages: [{ role: 'user', content: 'hi' }] };
      assert.equal((await post(tb, '/openai/v1/chat/completions', a.key, chat)).status, 200);
      assert.equal((await post(tb, '/openai/v1/chat/completions', b.key, chat)).status, 200);
      const refused = await post(tb, '/openai/v1/chat/completions', b.key, chat);
      assert.equal(refused.status, 429);
      const body = JSON.parse(refused.text) as { error: { type: string; code: string; message: string } };
      assert.equal(body.error.code, 'budget_exceeded');
      assert.match(body.error.message, /team capped/);
      // Raising the limit lets requests through again at once.
      await tb.api('PUT', '/api/v1/budgets', tb.adminKey, {
        scope: 'team',
        subject: 'capped',
        period: 'month',
        limitUsd: 100,
        action: 'block',
      });
      assert.equal((await post(tb, '/openai/v1/chat/completions', a.key, chat)).status, 200);
      const del = await tb.api(
        'DELETE',
        '/api/v1/budgets?scope=team&subject=capped&period=month',
        tb.adminKey,
      );
      assert.equal(del.status, 200);
      const gone = await tb.api<{ error: { code: string } }>(
        'GET',
        `/api/v1/budgets/${put.body.id}`,
        tb.adminKey,
      );
      assert.equal(gone.body.error.code, 'budget_not_found');
    });

    it('alerts at each threshold once, posts to the webhook with retries, and publishes the alert', async () => {
      const dev = await tb.addUser('thresholds@example.com', { team: 'alerts' });
      const put = await tb.api<BudgetStatus>('PUT', '/api/v1/budgets', tb.adminKey, {
        scope: 'user',
        subject: dev.user.id,
        period: 'week',
        limitUsd: ANTHROPIC_COST * 4,
        action: 'alert',
        thresholds: [0.5, 1],
      });
      const events: Alert[] = [];
      const unsubscribe = tb.bridge.bus.subscribe((e) => {
        if (e.type === 'budget.alert') events.push(e.alert);
      });
      hook.failNext(2);
      for (let i = 0; i < 5; i++) {
        assert.equal(
          (await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-sonnet-4-5'))).status,
          200,
          'an alert budget never blocks',
        );
      }
      const received: Received[] = await hook.waitFor(2, (r) => r.body.alert.budgetId === put.body.id);
      unsubscribe();
      assert.deepEqual(
        received.map((r) => r.body.alert.message.match(/^(\d+)%/)?.[1]),
        ['50', '100'],
      );
      assert.ok(
        received.every((r) => r.body.type === 'budget.alert' && r.body.alert.rule === 'budget_threshold'),
      );
      assert.ok(hook.failures >= 2, 'the receiver failed twice and the sender retried');
      assert.equal(events.filter((a) => a.budgetId === put.body.id).length, 2);
      const listed = await tb.api<{ items: Alert[] }>('GET', '/api/v1/alerts', dev.key);
      assert.equal(listed.body.items.filter((a) => a.budgetId === put.body.id).length, 2);
      assert.ok(
        listed.body.items.every((a) => a.userId === dev.user.id),
        'members see only their own alerts',
      );
    });
  });

  describe('limits and model policy', () => {
    it('rate-limits requests per minute with retry-after, in the API shape', async () => {
      const dev = await tb.addUser('rpm@example.com');
      const put = await tb.api('PUT', '/api/v1/rate-limits', tb.adminKey, {
        scope: 'user',
        subject: 'rpm@example.com',
        rpm: 2,
      });
      assert.equal(put.status, 200);
      const before = openai.modelRequests().length;
      const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] };
      assert.equal((await post(tb, '/openai/v1/chat/completions', dev.key, chat)).status, 200);
      assert.equal((await post(tb, '/openai/v1/chat/completions', dev.key, chat)).status, 200);
      const third = await post(tb, '/openai/v1/chat/completions', dev.key, chat);
      assert.equal(third.status, 429);
      assert.equal((JSON.parse(third.text) as { error: { code: string } }).error.code, 'rate_limited');
      const retry = Number(third.headers.get('retry-after'));
      assert.ok(retry >= 1 && retry <= 60, `retry-after ${retry}`);
      assert.equal(third.headers.get('x-should-retry'), null, 'a per-minute limit is worth a retry');
      assert.equal(third.headers.get('x-aibridge-error-code'), 'rate_limited');
      assert.equal(openai.modelRequests().length - before, 2);
    });

    it('counts requests refused after it (the model policy, another’s stored response, a tool rule it cannot hold) against requests per minute', async () => {
      // Each refusal is recorded as any request is: uncounted, a member could write them into the
      // audit as fast as they can send.
      const dev = await tb.addUser('rpm-refused@example.com', { team: 'rpm-refused' });
      await tb.api('PUT', '/api/v1/teams/rpm-refused/models', tb.adminKey, { deny: ['claude-opus-*'] });
      const rule = { id: 'rpm-no-bash', tool: 'Bash', action: 'deny', scope: 'team', subject: 'rpm-refused' };
      assert.equal((await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: [rule] })).status, 200);
      await tb.api('PUT', '/api/v1/rate-limits', tb.adminKey, {
        scope: 'user',
        subject: 'rpm-refused@example.com',
        rpm: 3,
      });
      const before = anthropic.messageRequests().length + openai.modelRequests().length;
      const denied = await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-opus-4-5'));
      assert.equal(denied.status, 403, denied.text);
      const foreign = await post(tb, '/openai/v1/responses', dev.key, {
        model: 'gpt-4o',
        input: 'go on',
        previous_response_id: 'resp_not_theirs',
      });
      assert.equal(foreign.status, 404, foreign.text);
      assert.equal(foreign.headers.get('x-aibridge-error-code'), 'response_not_found');
      // The legacy `functions` form, whose calls a deny rule cannot hold.
      const legacy = await post(tb, '/openai/v1/chat/completions', dev.key, {
        model: 'gpt-4o',
        functions: [{ name: 'Bash', parameters: { type: 'object', properties: {} } }],
        messages: [{ role: 'user', content: 'x' }],
      });
      assert.equal(legacy.status, 400, legacy.text);
      assert.equal(legacy.headers.get('x-aibridge-error-code'), 'unsupported_parameter');
      const third = await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-sonnet-4-5'));
      assert.equal(third.status, 429, third.text);
      assert.equal(third.headers.get('x-aibridge-error-code'), 'rate_limited');
      assert.match(third.text, /3 requests per minute/);
      assert.equal(anthropic.messageRequests().length + openai.modelRequests().length, before);
      // All four are in the audit, each with its own refusal.
      await tb.bridge.recorder.drain();
      const recs = await tb.api<{ items: { error: { type: string } | null; httpStatus: number }[] }>(
        'GET',
        `/api/v1/interceptions?user=${encodeURIComponent('rpm-refused@example.com')}`,
        tb.adminKey,
      );
      assert.deepEqual(recs.body.items.map((r) => [r.httpStatus, r.error?.type]).sort(), [
        [400, 'unsupported_parameter'],
        [403, 'model_denied'],
        [404, 'response_not_found'],
        [429, 'rate_limited'],
      ]);
      await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: [] });
    });

    it('counts passthroughs (a token count) against requests per minute: none reaches the provider past it', async () => {
      const dev = await tb.addUser('rpm-passthrough@example.com');
      await tb.api('PUT', '/api/v1/rate-limits', tb.adminKey, {
        scope: 'user',
        subject: 'rpm-passthrough@example.com',
        rpm: 2,
      });
      const counted = () =>
        anthropic.requests.filter((r) => r.url.startsWith('/v1/messages/count_tokens')).length;
      const before = counted();
      const body = { model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }] };
      for (let i = 0; i < 2; i++)
        assert.equal((await post(tb, '/anthropic/v1/messages/count_tokens', dev.key, body)).status, 200);
      const third = await post(tb, '/anthropic/v1/messages/count_tokens', dev.key, body);
      assert.equal(third.status, 429, third.text);
      assert.equal(third.headers.get('x-aibridge-error-code'), 'rate_limited');
      assert.equal(
        (JSON.parse(third.text) as { type: string; error: { type: string } }).error.type,
        'rate_limit_error',
      );
      // And the metered requests share the window.
      const metered = await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-sonnet-4-5'));
      assert.equal(metered.status, 429, metered.text);
      assert.equal(counted() - before, 2);
    });

    it('rate-limits tokens per minute from real usage', async () => {
      const dev = await tb.addUser('tpm@example.com');
      await tb.api('PUT', '/api/v1/rate-limits', tb.adminKey, { scope: 'key', subject: dev.keyId, tpm: 100 });
      assert.equal(
        (await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-sonnet-4-5'))).status,
        200,
      );
      const second = await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-sonnet-4-5'));
      assert.equal(second.status, 429);
      assert.match(second.text, /100 tokens per minute/);
    });

    /** A new user with a tokens-per-minute limit of their own. */
    const tpmUser = async (email: string, tpm: number) => {
      const dev = await tb.addUser(email);
      await tb.api('PUT', '/api/v1/rate-limits', tb.adminKey, {
        scope: 'user',
        subject: dev.user.email,
        tpm,
      });
      return dev;
    };
    /** A gate the mock holds its streams at, and the function that opens it. */
    const opened = (): { gate: Promise<void>; release: () => void } => {
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      return { gate, release };
    };

    it('holds each running request’s tokens (body and max_tokens) against tpm: requests in parallel pass it by one at most, and give them back as they end', async () => {
      const dev = await tpmUser('tpm-parallel@example.com', 1000);
      const { gate, release } = opened();
      // Each holds about 300 tokens (max_tokens) and a few for its body while the provider holds it.
      const body = messages('claude-sonnet-4-5', { max_tokens: 300, stream: true });
      const sentBefore = anthropic.messageRequests().length;
      anthropic.next({ kind: 'gated', gate }, { kind: 'gated', gate }, { kind: 'gated', gate });
      const running = [0, 1, 2].map(() => post(tb, '/anthropic/v1/messages', dev.key, body));
      await eventually(
        async () => (anthropic.messageRequests().length >= sentBefore + 3 ? true : undefined),
        {
          what: 'three requests at the provider',
        },
      );
      const fourth = await post(tb, '/anthropic/v1/messages', dev.key, body);
      assert.equal(fourth.status, 429, fourth.text);
      assert.match(fourth.text, /1000 tokens per minute/);
      assert.equal(
        fourth.headers.get('retry-after'),
        '1',
        'the running requests give their tokens back as they end',
      );
      release();
      for (const r of await Promise.all(running)) assert.equal(r.status, 200, r.text);
      // Their real usage (a few tokens each) replaced what they held.
      assert.equal((await post(tb, '/anthropic/v1/messages', dev.key, body)).status, 200);
    });

    it('holds an inline image at the tokens a provider counts for one, not its base64 size: a screenshot does not fill tpm', async () => {
      const dev = await tpmUser('tpm-image@example.com', 20_000);
      const { gate, release } = opened();
      const sentBefore = anthropic.messageRequests().length;
      anthropic.next({ kind: 'gated', gate });
      // 600 KB of base64: 200,000 "tokens" by size, ~1,600 as an image.
      const screenshot = messages('claude-sonnet-4-5', {
        max_tokens: 100,
        stream: true,
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'image',
                source: { type: 'base64', media_type: 'image/png', data: 'A'.repeat(600_000) },
              },
              { type: 'text', text: 'what is this?' },
            ],
          },
        ],
      });
      const running = post(tb, '/anthropic/v1/messages', dev.key, screenshot);
      await eventually(async () => (anthropic.messageRequests().length > sentBefore ? true : undefined), {
        what: 'the screenshot at the provider',
      });
      const next = await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-sonnet-4-5'));
      assert.equal(next.status, 200, next.text);
      release();
      assert.equal((await running).status, 200);
    });

    it('denies models by team with globs and regexes, in each API shape, without contacting upstream', async () => {
      const dev = await tb.addUser('policy@example.com', { team: 'frugal' });
      const put = await tb.api('PUT', '/api/v1/teams/frugal/models', tb.adminKey, {
        allow: ['claude-*', '/^gpt-5(\\.\\d)?$/'],
        deny: ['claude-opus-*'],
      });
      assert.equal(put.status, 200);
      const before = anthropic.messageRequests().length + openai.modelRequests().length;
      const opus = await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-opus-4-5'));
      assert.equal(opus.status, 403);
      assert.equal((JSON.parse(opus.text) as { error: { type: string } }).error.type, 'permission_error');
      assert.match(opus.text, /claude-opus-4-5/);
      const gpt4 = await post(tb, '/openai/v1/responses', dev.key, { model: 'gpt-4o', input: 'hi' });
      assert.equal(gpt4.status, 403);
      assert.equal((JSON.parse(gpt4.text) as { error: { code: string } }).error.code, 'model_denied');
      assert.equal(anthropic.messageRequests().length + openai.modelRequests().length, before);
      assert.equal(
        (await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-sonnet-4-5'))).status,
        200,
      );
      assert.equal(
        (await post(tb, '/openai/v1/responses', dev.key, { model: 'gpt-5', input: 'hi' })).status,
        200,
      );
      const other = await tb.addUser('policy-other@example.com', { team: 'lavish' });
      assert.equal(
        (await post(tb, '/anthropic/v1/messages', other.key, messages('claude-opus-4-5'))).status,
        200,
      );

      const badRegex = await tb.api<{ error: { code: string } }>(
        'PUT',
        '/api/v1/teams/x/models',
        tb.adminKey,
        {
          deny: ['/([/'],
        },
      );
      assert.equal(badRegex.status, 400);
    });

    it('refuses a Responses request that names no model (a stored prompt picks it) while a deny list applies', async () => {
      const dev = await tb.addUser('policy-prompt@example.com', { team: 'no-gpt5' });
      const put = await tb.api('PUT', '/api/v1/teams/no-gpt5/models', tb.adminKey, { deny: ['gpt-5*'] });
      assert.equal(put.status, 200);
      const before = openai.modelRequests().length;
      // The provider runs the stored prompt's model (gpt-5 here): the body alone does not say which.
      const stored = await post(tb, '/openai/v1/responses', dev.key, {
        prompt: { id: 'pmpt_1' },
        input: 'hi',
      });
      assert.equal(stored.status, 403, stored.text);
      assert.equal((JSON.parse(stored.text) as { error: { code: string } }).error.code, 'model_denied');
      assert.equal(openai.modelRequests().length, before, 'the provider is not contacted');
      assert.equal(
        (await post(tb, '/openai/v1/responses', dev.key, { model: 'gpt-4o', input: 'hi' })).status,
        200,
      );
    });
  });

  describe('usage reports', () => {
    it('rows and CSV match the records they summarise, by every dimension', async () => {
      const recs = await tb.interceptions(1);
      for (const groupBy of ['user', 'team', 'model', 'client', 'day'] as const) {
        const res = await tb.api<UsageReport>('GET', `/api/v1/usage?groupBy=${groupBy}`, tb.adminKey);
        assert.equal(res.status, 200);
        const expected = new Map<string, { requests: number; input: number; output: number; cost: number }>();
        for (const r of recs) {
          const k =
            groupBy === 'user'
              ? r.userEmail
              : groupBy === 'team'
                ? (r.team ?? '(none)')
                : groupBy === 'model'
                  ? (r.model ?? '(none)')
                  : groupBy === 'client'
                    ? r.client
                    : r.startedAt.slice(0, 10);
          const e = expected.get(k) ?? { requests: 0, input: 0, output: 0, cost: 0 };
          e.requests += 1;
          e.input += r.usage.input;
          e.output += r.usage.output;
          e.cost += r.costUsd ?? 0;
          expected.set(k, e);
        }
        assert.equal(res.body.rows.length, expected.size, groupBy);
        for (const row of res.body.rows) {
          const e = expected.get(row.key)!;
          assert.ok(e, `${groupBy}: unexpected row ${row.key}`);
          assert.equal(row.requests, e.requests, `${groupBy} ${row.key}`);
          assert.equal(row.usage.input, e.input);
          assert.equal(row.usage.output, e.output);
          assert.ok(
            Math.abs(row.costUsd - e.cost) < 1e-5,
            `${groupBy} ${row.key}: ${row.costUsd} vs ${e.cost}`,
          );
        }
        assert.equal(res.body.totals.requests, recs.length);

        const csv = await fetch(`${tb.url}/api/v1/usage?groupBy=${groupBy}&format=csv`, {
          headers: { authorization: `Bearer ${tb.adminKey}` },
        });
        assert.match(csv.headers.get('content-type') ?? '', /^text\/csv/);
        const lines = (await csv.text()).trim().split('\r\n');
        assert.equal(
          lines[0],
          'key,requests,input,output,cacheRead,cacheWrite,reasoning,costUsd,unpricedRequests',
        );
        const fromCsv = lines.slice(1).map((l) => l.split(','));
        assert.deepEqual(
          fromCsv.map((c) => [c[0], Number(c[1]), Number(c[2]), Number(c[7])]),
          res.body.rows.map((r: UsageRow) => [r.key, r.requests, r.usage.input, r.costUsd]),
        );
      }
    });

    it('ranks power users with their share, and gives members their own period', async () => {
      const top = await tb.api<{ rows: { email: string; share: number; value: number }[]; total: number }>(
        'GET',
        '/api/v1/usage/top?by=requests&limit=1000',
        tb.adminKey,
      );
      assert.equal(top.status, 200);
      const shares = top.body.rows.reduce((s, r) => s + r.share, 0);
      assert.ok(Math.abs(shares - 1) < 1e-9);
      for (let i = 1; i < top.body.rows.length; i++) {
        assert.ok(top.body.rows[i - 1]!.value >= top.body.rows[i]!.value);
      }
      const byCost = await tb.api<{ rows: { email: string }[] }>(
        'GET',
        '/api/v1/usage/top?by=cost&limit=2',
        tb.adminKey,
      );
      assert.equal(byCost.body.rows.length, 2);

      const dev = await tb.addUser('me@example.com');
      await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-sonnet-4-5'));
      await tb.interceptions(1, dev.key);
      const me = await tb.api<{ requests: number; costUsd: number; byModel: UsageRow[]; since: string }>(
        'GET',
        '/api/v1/usage/me?period=month',
        dev.key,
      );
      assert.equal(me.status, 200);
      assert.equal(me.body.requests, 1);
      close(me.body.costUsd, Math.round(ANTHROPIC_COST * 1e6) / 1e6);
      assert.deepEqual(
        me.body.byModel.map((r) => r.key),
        ['claude-sonnet-4-5'],
      );
      assert.match(me.body.since, /-01T00:00:00.000Z$/);
      const forbidden = await tb.api<{ error: { code: string } }>('GET', '/api/v1/usage', dev.key);
      assert.equal(forbidden.status, 403);
    });
  });
});

describe('AIBRIDGE_UNPRICED_MODELS=block', () => {
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;
  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    tb = await startBridge(anthropic.url, {
      AIBRIDGE_UNPRICED_MODELS: 'block',
      AIBRIDGE_OPENAI_BASE_URL: openai.url,
    });
  });
  after(async () => {
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  it('refuses a Responses request that names no model (its stored prompt picks one, priced or not)', async () => {
    const dev = await tb.addUser('unpriced-prompt@example.com');
    const before = openai.modelRequests().length;
    const refused = await post(tb, '/openai/v1/responses', dev.key, {
      prompt: { id: 'pmpt_1' },
      input: 'hi',
    });
    assert.equal(refused.status, 403, refused.text);
    assert.equal(refused.headers.get('x-aibridge-error-code'), 'model_unpriced');
    assert.equal(openai.modelRequests().length, before, 'the provider was not contacted');
  });

  it('refuses a model without a price, before the provider, until an admin prices it; priced models are served', async () => {
    const dev = await tb.addUser('unpriced@example.com');
    const model = 'claude-from-the-future-9';
    const before = anthropic.messageRequests().length;
    const refused = await post(tb, '/anthropic/v1/messages', dev.key, messages(model));
    assert.equal(refused.status, 403);
    const err = JSON.parse(refused.text) as { error: { type: string; message: string } };
    assert.equal(err.error.type, 'permission_error');
    assert.match(err.error.message, /claude-from-the-future-9" has no price/);
    assert.equal(refused.headers.get('x-aibridge-error-code'), 'model_unpriced');
    assert.equal(refused.headers.get('x-should-retry'), 'false');
    assert.equal(anthropic.messageRequests().length, before, 'the provider was not contacted');
    assert.equal(
      (await post(tb, '/anthropic/v1/messages', dev.key, messages('claude-sonnet-4-6'))).status,
      200,
    );

    const priced = await tb.api('PUT', `/api/v1/prices/${model}`, tb.adminKey, {
      input_mtok: 5,
      output_mtok: 25,
    });
    assert.equal(priced.status, 200, JSON.stringify(priced.body));
    assert.equal((await post(tb, '/anthropic/v1/messages', dev.key, messages(model))).status, 200);
    const rec = (await tb.interceptions(3, dev.key))[0]!;
    assert.equal(rec.model, model);
    assert.equal(rec.priceKnown, true);
  });
});

describe('amounts in a budget refusal', () => {
  it('cents from $1, four places below, and a tiny budget in its own digits rather than $0.0000', () => {
    assert.equal(usd(12.345), '$12.35');
    assert.equal(usd(0.5), '$0.5000');
    assert.equal(usd(0.0001), '$0.0001');
    assert.equal(usd(0.000001), '$0.000001');
    assert.equal(usd(0.0000015), '$0.0000015');
    assert.equal(usd(3e-9), '$0.000000003');
    assert.equal(usd(0), '$0.0000');
  });
});
