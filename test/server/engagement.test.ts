import assert from 'node:assert/strict';
import type { EngagementReport, EngagementRow } from '../../shared/engagement';
import type { User } from '../../shared/identity';
import { AnthropicMock, DEFAULT_USAGE } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { testPostgres } from '../helpers/postgres';

/** USD per million tokens for claude-sonnet-4-5, as the bundled genai-prices data has them. */
const SONNET_45 = { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 };
const SONNET_COST =
  (DEFAULT_USAGE.input_tokens * SONNET_45.input +
    DEFAULT_USAGE.output_tokens * SONNET_45.output +
    DEFAULT_USAGE.cache_read_input_tokens * SONNET_45.cacheRead +
    DEFAULT_USAGE.cache_creation_input_tokens * SONNET_45.cacheWrite) /
  1e6;
const usd = (n: number): number => Math.round(n * 1e6) / 1e6;

/** What `n` requests answered with the mock's usage add up to. */
function tokens(n: number): EngagementRow['tokens'] {
  const u = DEFAULT_USAGE;
  return {
    input: n * u.input_tokens,
    output: n * u.output_tokens,
    cacheRead: n * u.cache_read_input_tokens,
    cacheWrite: n * u.cache_creation_input_tokens,
    reasoning: 0,
    total: n * (u.input_tokens + u.output_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens),
  };
}

function row(u: User, over: Partial<EngagementRow> = {}): EngagementRow {
  return {
    userId: u.id,
    email: u.email,
    name: u.name,
    team: u.team,
    role: u.role,
    createdAt: u.createdAt,
    requests: 0,
    tokens: tokens(0),
    costUsd: 0,
    unpricedRequests: 0,
    activeDays: 0,
    lastUsedAt: null,
    ...over,
  };
}

async function ask(tb: TestBridge, key: string, model: string): Promise<void> {
  const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'anthropic-version': '2023-06-01',
      authorization: `Bearer ${key}`,
    },
    body: JSON.stringify({ model, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(res.status, 200, await res.text());
}

const T0 = '2026-10-30T12:00:00.000Z';

for (const storeKind of ['embedded', 'postgres'] as const) {
  describe(`usage by user: power users and least engaged users (${storeKind} store)`, function () {
    this.timeout(120_000);
    let mock: AnthropicMock;
    let tb: TestBridge;
    const clock = new TestClock(Date.parse(T0));
    const u: Record<'admin' | 'ada' | 'bob' | 'cy' | 'dee', User> = {} as never;
    let memberKey = '';

    const report = async (query: string): Promise<EngagementReport> => {
      const res = await tb.api<EngagementReport>('GET', `/api/v1/usage/users${query}`, tb.adminKey);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body;
    };

    before(async () => {
      mock = await new AnthropicMock().start();
      const env: Record<string, string> =
        storeKind === 'postgres'
          ? { AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('engagement') }
          : {};
      tb = await startBridge(mock.url, env, undefined, { clock });
      const users = await tb.api<{ items: User[] }>('GET', '/api/v1/users', tb.adminKey);
      u.admin = users.body.items[0]!;
      const ada = await tb.addUser('ada@example.com', { team: 'platform' });
      const bob = await tb.addUser('bob@example.com', { team: 'platform' });
      const cy = await tb.addUser('cy@example.com', { team: 'web' });
      const dee = await tb.addUser('dee@example.com', { team: 'web' });
      Object.assign(u, { ada: ada.user, bob: bob.user, cy: cy.user, dee: dee.user });
      memberKey = dee.key;

      // cy last used the bridge in October; ada on two days of November, bob once with a model
      // nobody priced; dee (and the admin) never.
      await ask(tb, cy.key, 'claude-sonnet-4-5');
      clock.advance(Date.parse('2026-11-02T09:00:00.000Z') - clock.now());
      await ask(tb, ada.key, 'claude-sonnet-4-5');
      clock.advance(60_000);
      await ask(tb, ada.key, 'claude-sonnet-4-5');
      clock.advance(Date.parse('2026-11-04T15:30:00.000Z') - clock.now());
      await ask(tb, ada.key, 'claude-sonnet-4-5');
      clock.advance(60_000);
      await ask(tb, bob.key, 'claude-from-the-future-9');
      assert.equal((await tb.interceptions(5)).length, 5);
    });

    after(async () => {
      await tb?.close();
      await mock?.stop();
    });

    it('lists every provisioned user in this month, by cost: zeros for the unused, last use ever', async () => {
      const r = await report('');
      assert.deepEqual(r, {
        period: 'month',
        since: '2026-11-01T00:00:00.000Z',
        until: '2026-12-01T00:00:00.000Z',
        sort: 'cost',
        order: 'desc',
        team: null,
        rows: [
          row(u.ada, {
            requests: 3,
            tokens: tokens(3),
            costUsd: usd(3 * SONNET_COST),
            activeDays: 2,
            lastUsedAt: '2026-11-04T15:30:00.000Z',
          }),
          // Equal cost: by email.
          row(u.admin),
          row(u.bob, {
            requests: 1,
            tokens: tokens(1),
            unpricedRequests: 1,
            activeDays: 1,
            lastUsedAt: '2026-11-04T15:31:00.000Z',
          }),
          // Used before the window: nothing in it, but the last use is still known.
          row(u.cy, { lastUsedAt: T0 }),
          row(u.dee),
        ],
      });
    });

    it('sorts by last use (never-used first when ascending), tokens, active days and email', async () => {
      const emails = (r: EngagementReport): string[] => r.rows.map((x) => x.email);
      const asc = await report('?sort=lastUsedAt&order=asc');
      assert.equal(asc.order, 'asc');
      assert.deepEqual(emails(asc), [u.admin.email, u.dee.email, u.cy.email, u.ada.email, u.bob.email]);
      assert.deepEqual(emails(await report('?sort=lastUsedAt')), [
        u.bob.email,
        u.ada.email,
        u.cy.email,
        u.admin.email,
        u.dee.email,
      ]);
      assert.deepEqual(emails(await report('?sort=tokens')), [
        u.ada.email,
        u.bob.email,
        u.admin.email,
        u.cy.email,
        u.dee.email,
      ]);
      assert.deepEqual(emails(await report('?sort=activeDays&order=asc')), [
        u.admin.email,
        u.cy.email,
        u.dee.email,
        u.bob.email,
        u.ada.email,
      ]);
      const byEmail = await report('?sort=email');
      assert.equal(byEmail.order, 'asc', 'text sorts up by default');
      assert.deepEqual(emails(byEmail), [u.ada.email, u.admin.email, u.bob.email, u.cy.email, u.dee.email]);
      assert.deepEqual(emails(await report('?sort=email&order=desc')), emails(byEmail).reverse());
    });

    it('filters by team and by period, or by an explicit window', async () => {
      const platform = await report('?team=platform&sort=requests');
      assert.equal(platform.team, 'platform');
      assert.deepEqual(
        platform.rows.map((x) => [x.email, x.requests]),
        [
          [u.ada.email, 3],
          [u.bob.email, 1],
        ],
      );

      const today = await report('?period=day&team=platform');
      assert.deepEqual([today.since, today.until], ['2026-11-04T00:00:00.000Z', '2026-11-05T00:00:00.000Z']);
      assert.deepEqual(today.rows, [
        row(u.ada, {
          requests: 1,
          tokens: tokens(1),
          costUsd: usd(SONNET_COST),
          activeDays: 1,
          lastUsedAt: '2026-11-04T15:30:00.000Z',
        }),
        row(u.bob, {
          requests: 1,
          tokens: tokens(1),
          unpricedRequests: 1,
          activeDays: 1,
          lastUsedAt: '2026-11-04T15:31:00.000Z',
        }),
      ]);

      const week = await report('?period=week&sort=activeDays');
      assert.deepEqual([week.since, week.until], ['2026-11-02T00:00:00.000Z', '2026-11-09T00:00:00.000Z']);
      assert.deepEqual(
        week.rows.map((x) => [x.email, x.activeDays, x.requests]),
        [
          [u.ada.email, 2, 3],
          [u.bob.email, 1, 1],
          [u.admin.email, 0, 0],
          [u.cy.email, 0, 0],
          [u.dee.email, 0, 0],
        ],
      );

      // since and until replace the period's bounds; they are widened to whole hours.
      const window = await report('?since=2026-10-01T00:00:00Z&until=2026-11-02T09:00:30Z&sort=activeDays');
      assert.deepEqual(
        [window.since, window.until],
        ['2026-10-01T00:00:00.000Z', '2026-11-02T10:00:00.000Z'],
      );
      assert.deepEqual(
        window.rows.map((x) => [x.email, x.activeDays, x.requests]),
        [
          [u.ada.email, 1, 2],
          [u.cy.email, 1, 1],
          [u.admin.email, 0, 0],
          [u.bob.email, 0, 0],
          [u.dee.email, 0, 0],
        ],
      );
      // Two requests' cost lands on a half micro-dollar: rounding may go either way.
      assert.ok(
        Math.abs(window.rows[0]!.costUsd - 2 * SONNET_COST) <= 0.5e-6,
        String(window.rows[0]!.costUsd),
      );
      assert.equal(window.rows[1]!.costUsd, usd(SONNET_COST));

      // A date alone is ISO 8601 too: that day's start, UTC (what people type into ?since=).
      const days = await report('?since=2026-10-01&until=2026-11-02&sort=activeDays');
      assert.deepEqual([days.since, days.until], ['2026-10-01T00:00:00.000Z', '2026-11-02T00:00:00.000Z']);
      const midnights = await report(
        '?since=2026-10-01T00:00:00Z&until=2026-11-02T00:00:00Z&sort=activeDays',
      );
      assert.deepEqual(days.rows, midnights.rows);
      assert.deepEqual(
        days.rows.map((x) => [x.email, x.requests]),
        [
          [u.cy.email, 1],
          [u.ada.email, 0],
          [u.admin.email, 0],
          [u.bob.email, 0],
          [u.dee.email, 0],
        ],
      );
    });

    it('exports the same rows as CSV', async () => {
      const get = (q: string): Promise<Response> =>
        fetch(`${tb.url}/api/v1/usage/users${q}`, { headers: { authorization: `Bearer ${tb.adminKey}` } });
      const header =
        'email,name,team,role,createdAt,requests,input,output,cacheRead,cacheWrite,reasoning,totalTokens,costUsd,unpricedRequests,activeDays,lastUsedAt\r\n';
      const web = await get('?team=web&sort=email&format=csv');
      assert.equal(web.status, 200);
      assert.match(web.headers.get('content-type') ?? '', /^text\/csv/);
      assert.equal(web.headers.get('content-disposition'), 'attachment; filename="usage-by-user-month.csv"');
      assert.equal(
        await web.text(),
        header +
          `cy@example.com,,web,member,${T0},0,0,0,0,0,0,0,0,0,0,${T0}\r\n` +
          `dee@example.com,,web,member,${T0},0,0,0,0,0,0,0,0,0,0,\r\n`,
      );
      const platform = await get('?team=platform&format=csv');
      const t = tokens(3);
      assert.equal(
        await platform.text(),
        header +
          `ada@example.com,,platform,member,${T0},3,${t.input},${t.output},${t.cacheRead},${t.cacheWrite},0,${t.total},${usd(3 * SONNET_COST)},0,2,2026-11-04T15:30:00.000Z\r\n` +
          `bob@example.com,,platform,member,${T0},1,${tokens(1).input},${tokens(1).output},${tokens(1).cacheRead},${tokens(1).cacheWrite},0,${tokens(1).total},0,1,1,2026-11-04T15:31:00.000Z\r\n`,
      );
    });

    it('is for admins only, and refuses a bad sort or an empty window with invalid_request', async () => {
      const member = await tb.api<{ error: { code: string } }>('GET', '/api/v1/usage/users', memberKey);
      assert.equal(member.status, 403);
      assert.equal(member.body.error.code, 'forbidden');
      const anonymous = await tb.api<{ error: { code: string } }>('GET', '/api/v1/usage/users', null);
      assert.equal(anonymous.status, 401);
      for (const q of [
        '?sort=spend',
        '?order=up',
        '?period=year',
        '?since=2026-11-05T00:00:00Z&until=2026-11-04T00:00:00Z',
        '?since=2026-13-01',
        '?since=2026-11-05T25:00:00Z',
        '?since=yesterday',
      ]) {
        const bad = await tb.api<{ error: { code: string; message: string } }>(
          'GET',
          `/api/v1/usage/users${q}`,
          tb.adminKey,
        );
        assert.equal(bad.status, 400, q);
        assert.equal(bad.body.error.code, 'invalid_request', q);
      }
    });
  });
}
