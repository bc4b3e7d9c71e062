import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { Interception } from '../../shared/interception';
import type { Alert, SessionBudgetStatus } from '../../shared/spend';
import { AnthropicMock, DEFAULT_USAGE } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { eventually } from '../helpers/eventually';
import { OpenAIMock } from '../helpers/openai-mock';
import { testPostgres } from '../helpers/postgres';

/** What one answer of the mock costs on claude-sonnet-4-6 (USD per million: 3 in, 15 out, 0.3 cache read, 3.75 cache write). */
const COST =
  (DEFAULT_USAGE.input_tokens * 3 +
    DEFAULT_USAGE.output_tokens * 15 +
    DEFAULT_USAGE.cache_read_input_tokens * 0.3 +
    DEFAULT_USAGE.cache_creation_input_tokens * 3.75) /
  1e6;

for (const storeKind of ['embedded', 'postgres'] as const) {
  describe(`session caps (${storeKind} store)`, function () {
    this.timeout(120_000);
    let mock: AnthropicMock;
    let openai: OpenAIMock;
    let tb: TestBridge;
    let env: Record<string, string>;
    const clock = new TestClock(Date.parse('2026-11-12T10:00:00.000Z'));

    const claude = (tbx: TestBridge, key: string, session?: string): Anthropic =>
      new Anthropic({
        apiKey: key,
        baseURL: `${tbx.url}/anthropic`,
        maxRetries: 0,
        ...(session ? { defaultHeaders: { 'x-claude-code-session-id': session } } : {}),
      });

    const ask = (client: Anthropic): Promise<Anthropic.Message> =>
      client.messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 256,
        messages: [{ role: 'user', content: 'keep going' }],
      });

    const refusal = async (client: Anthropic): Promise<InstanceType<typeof Anthropic.APIError>> => {
      const err = await ask(client).then(
        () => assert.fail('the capped session was served'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof Anthropic.RateLimitError, String(err));
      return err;
    };

    before(async () => {
      mock = await new AnthropicMock().start();
      openai = await new OpenAIMock().start();
      env = { AIBRIDGE_OPENAI_BASE_URL: openai.url };
      if (storeKind === 'postgres')
        env.AIBRIDGE_DATABASE_URL = await (await testPostgres()).createDatabase('sessioncaps');
      tb = await startBridge(mock.url, env, undefined, { clock });
    });

    after(async () => {
      await tb.close();
      await mock.stop();
      await openai.stop();
    });

    it('blocks a session past its cap in the Anthropic error shape; the same user’s other sessions go on', async () => {
      const dev = await tb.addUser('capped@example.com', { team: 'agents' });
      const other = await tb.addUser('uncapped@example.com', { team: 'agents' });
      const put = await tb.api<SessionBudgetStatus>('PUT', '/api/v1/budgets', tb.adminKey, {
        scope: 'session',
        subject: 'capped@example.com',
        limitUsd: COST * 1.5,
        action: 'block',
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.equal(put.body.scope, 'session');
      assert.equal(put.body.period, 'session');
      assert.equal(put.body.subject, dev.user.id);
      assert.equal(put.body.subjectKind, 'user');
      assert.equal(put.body.resetsAt, null);

      const a = claude(tb, dev.key, 'session-a');
      await ask(a);
      await ask(a); // under the cap when admitted; the session has now spent 2 × COST
      const err = await refusal(a);
      assert.equal(err.status, 429);
      const body = err.error as { type: string; error: { type: string; message: string } };
      assert.equal(body.type, 'error');
      assert.equal(body.error.type, 'rate_limit_error');
      assert.match(body.error.message, /session cap/);
      assert.match(body.error.message, /session session-a/);
      assert.match(body.error.message, new RegExp(put.body.id));

      // A new session of the same user, a request outside any session, and another user's session.
      await ask(claude(tb, dev.key, 'session-b'));
      await ask(claude(tb, dev.key));
      await ask(claude(tb, other.key, 'session-a'));
      const upstream = mock.messageRequests().length;
      await refusal(a);
      assert.equal(mock.messageRequests().length, upstream, 'the refusal never reached upstream');

      const recs = (await tb.interceptions(7, tb.adminKey)).filter(
        (r: Interception) => r.userId === dev.user.id,
      );
      const refused = recs.filter((r) => r.error?.type === 'budget_exceeded');
      assert.equal(refused.length, 2);
      assert.ok(refused.every((r) => r.sessionId === 'session-a' && r.costUsd === 0));

      // The budget listing shows the cap; deleting it by selector works without a period.
      const listed = await tb.api<{ items: SessionBudgetStatus[] }>('GET', '/api/v1/budgets', tb.adminKey);
      assert.ok(listed.body.items.some((b) => b.id === put.body.id && b.scope === 'session'));
      const me = await tb.api<{ budgets: { id: string }[] }>('GET', '/api/v1/usage/me', dev.key);
      assert.ok(!me.body.budgets.some((b) => b.id === put.body.id), 'period budgets only');
    });

    it('keeps the session’s ledger across a restart (embedded) or another replica (postgres)', async () => {
      const dev = await tb.addUser('replica@example.com', { team: 'agents' });
      await tb.api('PUT', '/api/v1/budgets', tb.adminKey, {
        scope: 'session',
        subject: 'replica@example.com',
        limitUsd: COST * 1.5,
        action: 'block',
      });
      const s = claude(tb, dev.key, 'long-session');
      await ask(s);
      await ask(s);
      await tb.interceptions(0);
      if (storeKind === 'embedded') {
        await tb.close();
        tb = await startBridge(mock.url, env, tb.dataDir, { clock });
        await refusal(claude(tb, dev.key, 'long-session'));
        await ask(claude(tb, dev.key, 'short-session'));
      } else {
        // A second bridge on the same database: the ledger row is shared.
        const replica = await startBridge(mock.url, env, tb.dataDir, { clock });
        try {
          await refusal(claude(replica, dev.key, 'long-session'));
          await ask(claude(replica, dev.key, 'short-session'));
        } finally {
          await replica.close();
        }
      }
    });

    it('alert-only: a team’s session cap alerts the user once and never blocks', async () => {
      const dev = await tb.addUser('alerted@example.com', { team: 'watched' });
      const put = await tb.api<SessionBudgetStatus>('PUT', '/api/v1/budgets', tb.adminKey, {
        scope: 'session',
        subject: 'watched',
        limitUsd: COST * 1.5,
        action: 'alert',
        thresholds: [1],
      });
      assert.equal(put.body.subjectKind, 'team');
      const s = claude(tb, dev.key, 'watched-session');
      for (let i = 0; i < 4; i++) await ask(s);
      const alerts = await eventually(async () => {
        const list = await tb.api<{ items: Alert[] }>('GET', '/api/v1/alerts', dev.key);
        const mine = list.body.items.filter((a) => a.budgetId === put.body.id);
        return mine.length > 0 ? mine : undefined;
      });
      assert.equal(alerts.length, 1);
      assert.equal(alerts[0]!.rule, 'session_cap');
      assert.equal(alerts[0]!.userId, dev.user.id);
      assert.match(alerts[0]!.message, /session watched-session/);
      assert.equal(alerts[0]!.sessionId, 'watched-session');
      // A session id is the client's to choose; what reaches admins' chat channels is not.
      const hostile = '<!channel> *RESOLVED* <https://evil.example|docs>';
      for (let i = 0; i < 4; i++) await ask(claude(tb, dev.key, hostile));
      const loud = await eventually(async () => {
        const list = await tb.api<{ items: Alert[] }>('GET', '/api/v1/alerts', dev.key);
        return list.body.items.find((a) => a.budgetId === put.body.id && a.sessionId === hostile);
      });
      assert.doesNotMatch(loud.message, /channel|RESOLVED|evil/);
      assert.match(loud.message, /a session \(see sessionId\)/);
      // A bare domain name is a link in chat apps too.
      const domain = 'corp-sso-password-reset.example.com';
      for (let i = 0; i < 4; i++) await ask(claude(tb, dev.key, domain));
      const linked = await eventually(async () => {
        const list = await tb.api<{ items: Alert[] }>('GET', '/api/v1/alerts', dev.key);
        return list.body.items.find((a) => a.budgetId === put.body.id && a.sessionId === domain);
      });
      assert.doesNotMatch(linked.message, /password-reset/);

      // Wrong shapes are refused: a session cap has no calendar period, a period budget needs one.
      const bad = await tb.api<{ error: { code: string } }>('PUT', '/api/v1/budgets', tb.adminKey, {
        scope: 'session',
        period: 'day',
        limitUsd: 1,
      });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'invalid_request');
      const noPeriod = await tb.api<{ error: { code: string } }>('PUT', '/api/v1/budgets', tb.adminKey, {
        scope: 'org',
        limitUsd: 1,
      });
      assert.equal(noPeriod.status, 400);
      const del = await tb.api('DELETE', '/api/v1/budgets?scope=session&subject=watched', tb.adminKey);
      assert.equal(del.status, 200);
    });

    it('a cap without a subject caps every session, refusing Codex-style OpenAI sessions in the OpenAI shape', async () => {
      const dev = await tb.addUser('codex@example.com', { team: 'codex' });
      const put = await tb.api<SessionBudgetStatus>('PUT', '/api/v1/budgets', tb.adminKey, {
        scope: 'session',
        limitUsd: 0.000001,
        action: 'block',
      });
      assert.equal(put.status, 200);
      assert.equal(put.body.subject, '*');
      assert.equal(put.body.subjectKind, undefined);
      const codex = (thread: string): OpenAI =>
        new OpenAI({
          apiKey: dev.key,
          baseURL: `${tb.url}/openai/v1`,
          maxRetries: 0,
          defaultHeaders: { 'session-id': thread },
        });
      const chat = (client: OpenAI) =>
        client.chat.completions.create({
          model: 'gpt-4o',
          max_tokens: 40,
          messages: [{ role: 'user', content: 'hi' }],
        });
      await chat(codex('thread-1'));
      const err = await chat(codex('thread-1')).then(
        () => assert.fail('the capped thread was served'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof OpenAI.RateLimitError, String(err));
      assert.equal(err.code, 'budget_exceeded');
      assert.match(err.message, /session cap/);
      await chat(codex('thread-2'));
      assert.equal((await tb.api('DELETE', `/api/v1/budgets/${put.body.id}`, tb.adminKey)).status, 200);
      await chat(codex('thread-1'));
    });
  });
}
