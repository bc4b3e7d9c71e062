import assert from 'node:assert/strict';
import pg from 'pg';
import type { BudgetStatus } from '../../shared/spend';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { testPostgres } from '../helpers/postgres';

/** How soon a change made on one replica must be in force on every replica (docs/storage.md). */
const PROPAGATION_MS = 1000;

describe('admin documents changed on two replicas at once', function () {
  this.timeout(60_000);
  let mock: AnthropicMock;
  let a: TestBridge;
  let b: TestBridge;
  let url: string;

  before(async () => {
    mock = await new AnthropicMock().start();
    url = await (await testPostgres()).createDatabase('docreload');
    a = await startBridge(mock.url, { AIBRIDGE_DATABASE_URL: url });
    b = await startBridge(mock.url, { AIBRIDGE_DATABASE_URL: url }, a.dataDir);
  });

  after(async () => {
    await a?.close();
    await b?.close();
    await mock.stop();
  });

  it('a team budget lowered on B while B reloads budgets (A changed one) is kept and enforced by B', async () => {
    const member = await a.addUser('spender@example.com', { team: 'lowered' });
    const owner = await a.addUser('owner@example.com');
    const put = async (tb: TestBridge, body: Record<string, unknown>): Promise<BudgetStatus> => {
      const r = await tb.api<BudgetStatus>('PUT', '/api/v1/budgets', tb.adminKey, body);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body;
    };
    const budgetsOn = async (tb: TestBridge): Promise<BudgetStatus[]> =>
      (await tb.api<{ items: BudgetStatus[] }>('GET', '/api/v1/budgets', tb.adminKey)).body.items;
    // A user's budget first: reloading it reads its user, which the test can hold up.
    await put(a, { scope: 'user', subject: owner.user.email, period: 'month', limitUsd: 50 });
    const team = await put(a, {
      scope: 'team',
      subject: 'lowered',
      period: 'month',
      limitUsd: 100,
      action: 'block',
    });
    await eventually(async () => (await budgetsOn(b)).length === 2, { what: 'B to know both budgets' });
    assert.equal((await askMessages(b.url, member.key)).status, 200, 'something is spent');

    // Replica B's next budget reload waits on the users table (it reads each user budget's user).
    const lock = new pg.Client({ connectionString: url });
    await lock.connect();
    let locked = true;
    try {
      await lock.query('BEGIN');
      await lock.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
      // Another budget changed on A: B reloads its budgets, and its read of the owner waits.
      await put(a, { scope: 'team', subject: 'elsewhere', period: 'month', limitUsd: 1 });
      await eventually(
        async () =>
          (
            await lock.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity
               WHERE wait_event_type = 'Lock' AND query LIKE '%FROM users WHERE id%'`,
            )
          ).rows[0]!.n > 0,
        { what: "B's reload to wait on the users table" },
      );
      // Meanwhile an admin lowers the team budget through B itself.
      const lowered = await put(b, {
        scope: 'team',
        subject: 'lowered',
        period: 'month',
        limitUsd: 0.000001,
        action: 'block',
      });
      assert.equal(lowered.id, team.id);
      await lock.query('COMMIT');
      locked = false;
    } finally {
      if (locked) await lock.query('ROLLBACK').catch(() => undefined);
      await lock.end();
    }
    // B's reload has ended once it knows the budget A added.
    await eventually(async () => (await budgetsOn(b)).some((x) => x.subject === 'elsewhere'), {
      what: "B's reload to end",
    });
    await eventually(async () => (await budgetsOn(b)).find((x) => x.id === team.id)?.limitUsd === 0.000001, {
      what: 'B to keep the limit set through it',
      timeoutMs: PROPAGATION_MS,
    });
    // And enforces it: once what was spent reaches the ledger, B refuses the team, as A does.
    await eventually(async () => (await askMessages(a.url, member.key)).status === 429, {
      what: 'A to refuse the team',
    });
    assert.equal((await askMessages(b.url, member.key)).status, 429);
  });

  it('rate limits, capture levels and prices set on A are in force on B within a second', async () => {
    const m = await a.addUser('governed@example.com', { team: 'governed' });
    const within = (what: string, check: () => Promise<boolean>) =>
      eventually(check, { what, timeoutMs: PROPAGATION_MS, intervalMs: 10 });
    const record = async (asked: {
      headers: Headers;
    }): Promise<{ capture?: string; costUsd: number | null }> => {
      const id = asked.headers.get('x-aibridge-interception-id');
      return eventually(async () => {
        const r = await b.api<{ capture?: string; costUsd: number | null }>(
          'GET',
          `/api/v1/interceptions/${id}`,
          b.adminKey,
        );
        return r.status === 200 ? r.body : undefined;
      });
    };
    assert.equal((await askMessages(b.url, m.key)).status, 200, 'B knows the user');

    const limit = await a.api<{ id: string }>('PUT', '/api/v1/rate-limits', a.adminKey, {
      scope: 'user',
      subject: m.user.email,
      rpm: 1,
    });
    assert.equal(limit.status, 200, JSON.stringify(limit.body));
    await within('B to apply the rate limit', async () => (await askMessages(b.url, m.key)).status === 429);
    assert.equal((await a.api('DELETE', `/api/v1/rate-limits/${limit.body.id}`, a.adminKey)).status, 200);
    await within('B to drop the rate limit', async () => (await askMessages(b.url, m.key)).status === 200);

    assert.equal(
      (await a.api('PUT', '/api/v1/teams/governed/capture', a.adminKey, { level: 'none' })).status,
      200,
    );
    await within(
      'B to capture the team at none',
      async () => (await record(await askMessages(b.url, m.key))).capture === 'none',
    );

    const model = 'claude-unlisted-7';
    const unpriced = await askMessages(b.url, m.key, { model });
    assert.equal((await record(unpriced)).costUsd, null);
    const unknownOnB = async (): Promise<boolean> =>
      (
        await b.api<{ items: { model: string }[] }>('GET', '/api/v1/prices/unknown', b.adminKey)
      ).body.items.some((u) => u.model === model);
    assert.equal(await unknownOnB(), true);
    const priced = await a.api('PUT', `/api/v1/prices/${model}`, a.adminKey, {
      input_mtok: 1,
      output_mtok: 2,
    });
    assert.equal(priced.status, 200, JSON.stringify(priced.body));
    await within(
      'B to price the model',
      async () => (await record(await askMessages(b.url, m.key, { model }))).costUsd !== null,
    );
    assert.equal(await unknownOnB(), false, 'B no longer lists the model as unpriced');
  });

  it('a member spreading requests over both replicas is held to one rate limit, requests and tokens', async () => {
    const m = await a.addUser('spread@example.com');
    const limit = await a.api<{ id: string }>('PUT', '/api/v1/rate-limits', a.adminKey, {
      scope: 'user',
      subject: m.user.email,
      rpm: 4,
    });
    assert.equal(limit.status, 200, JSON.stringify(limit.body));
    await eventually(
      async () =>
        (await b.api<{ items: { id: string }[] }>('GET', '/api/v1/rate-limits', b.adminKey)).body.items.some(
          (l) => l.id === limit.body.id,
        ),
      { what: 'B to load the limit', timeoutMs: PROPAGATION_MS, intervalMs: 10 },
    );
    const seen = mock.messageRequests().length;
    for (const tb of [a, b, a, b]) assert.equal((await askMessages(tb.url, m.key)).status, 200);
    // Each replica has counted two of the four; the other two reach it within its share interval.
    await new Promise((r) => setTimeout(r, PROPAGATION_MS));
    for (const tb of [a, b]) {
      const refused = await askMessages(tb.url, m.key);
      assert.equal(refused.status, 429, `${tb === a ? 'A' : 'B'}: ${refused.body}`);
      assert.match(refused.body, /4 requests per minute/);
    }
    assert.equal(mock.messageRequests().length - seen, 4, 'four requests reached the provider, no more');

    // Tokens are counted as requests end, on whichever replica served them.
    const t = await a.addUser('spread-tokens@example.com');
    assert.equal(
      (
        await a.api('PUT', '/api/v1/rate-limits', a.adminKey, {
          scope: 'user',
          subject: t.user.email,
          tpm: 1,
        })
      ).status,
      200,
    );
    await eventually(
      async () =>
        (
          await b.api<{ items: { subject: string }[] }>('GET', '/api/v1/rate-limits', b.adminKey)
        ).body.items.some((l) => l.subject === t.user.id),
      { what: 'B to load the token limit', timeoutMs: PROPAGATION_MS, intervalMs: 10 },
    );
    assert.equal((await askMessages(a.url, t.key)).status, 200);
    await new Promise((r) => setTimeout(r, PROPAGATION_MS));
    const over = await askMessages(b.url, t.key);
    assert.equal(over.status, 429, over.body);
    assert.match(over.body, /1 token per minute/);
  });

  it('a provisioner deleted on A while B serves a use of it stays deleted: its credential mints no more keys', async () => {
    const dev = await a.addUser('workspace@example.com');
    const created = await a.api<{ id: string; secret: string }>('POST', '/api/v1/provisioners', a.adminKey, {
      name: 'templates',
    });
    assert.equal(created.status, 201);
    const { id, secret } = created.body;
    const mint = (tb: TestBridge) =>
      tb.api('POST', `/api/v1/users/${encodeURIComponent(dev.user.email)}/keys`, secret, {
        ttlSeconds: 3600,
      });
    assert.equal((await mint(b)).status, 201);
    const before = await a.api<{ items: { id: string; lastUsedAt: string | null }[] }>(
      'GET',
      '/api/v1/provisioners',
      a.adminKey,
    );
    assert.ok(before.body.items.find((p) => p.id === id)?.lastUsedAt, 'the use is noted');

    const waiting = async (): Promise<number> =>
      (
        await lock.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() AND datname = current_database()`,
        )
      ).rows[0]!.n;
    // The provisioner's row held: the delete through A waits for it.
    const lock = new pg.Client({ connectionString: url });
    await lock.connect();
    let deleted: ReturnType<TestBridge['api']> | undefined;
    let minted: ReturnType<TestBridge['api']> | undefined;
    try {
      await lock.query('BEGIN');
      await lock.query(`SELECT 1 FROM docs WHERE kind = 'provisioner' AND id = $1 FOR UPDATE`, [id]);
      deleted = a.api('DELETE', `/api/v1/provisioners/${id}`, a.adminKey);
      await eventually(async () => (await waiting()) === 1, { what: 'the delete to wait' });
      // Meanwhile B serves a use: it found the provisioner before the delete, and notes the use.
      let done = false;
      minted = mint(b).finally(() => {
        done = true;
      });
      await eventually(async () => done || (await waiting()) === 2, { what: 'the use to be served or wait' });
    } finally {
      await lock.query('COMMIT');
      await lock.end();
    }
    assert.equal((await deleted!).status, 204);
    assert.equal((await minted!).status, 201, 'a use under way as it was deleted');
    const listed = await a.api<{ items: { id: string }[] }>('GET', '/api/v1/provisioners', a.adminKey);
    assert.deepEqual(
      listed.body.items.filter((p) => p.id === id),
      [],
      'the deleted provisioner is not back',
    );
    assert.equal((await mint(a)).status, 401);
    assert.equal((await mint(b)).status, 401);
  });
});
