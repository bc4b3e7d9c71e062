import assert from 'node:assert/strict';
import pg from 'pg';
import type { KeyInfo, User } from '../../shared/identity';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { type Asked, askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { liveClient } from '../helpers/live-client';
import { PgQueryLog } from '../helpers/pg-query-log';
import { testPostgres } from '../helpers/postgres';

/** How soon a change made on one replica must reach every other's authentication (docs/security.md). */
const PROPAGATION_MS = 1000;

function ask(tb: TestBridge, key: string): Promise<Asked> {
  return askMessages(tb.url, key);
}

/** Polls `check` until it holds and returns how long that took; fails past PROPAGATION_MS. */
async function within(what: string, check: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  await eventually(check, { what, timeoutMs: PROPAGATION_MS, intervalMs: 10 });
  const took = Date.now() - t0;
  assert.ok(took <= PROPAGATION_MS, `${what} took ${took} ms`);
  return took;
}

/** SQL of the authentication lookups (key by hash, user by id). */
const AUTH_SQL = /FROM bridge_keys WHERE hash|FROM users WHERE id/;
const BUDGET_SQL = /budget_ledgers|budget_reservations/;
const TOUCH_SQL = /UPDATE bridge_keys k SET doc = jsonb_set\(k\.doc, '\{lastUsedAt\}'/;

describe('PostgreSQL hot path: two replicas on one database', function () {
  this.timeout(60_000);
  let mock: AnthropicMock;
  let a: TestBridge;
  let b: TestBridge;
  let log: PgQueryLog;
  let bClosed = false;
  let dbUrl: string;

  before(async () => {
    mock = await new AnthropicMock().start();
    const url = await (await testPostgres()).createDatabase('hotpath');
    dbUrl = url;
    log = new PgQueryLog(new URL(url).pathname.slice(1)).start();
    const env = { AIBRIDGE_DATABASE_URL: url };
    a = await startBridge(mock.url, env);
    // The same data dir: the same key-hash secret and the admin key A wrote.
    b = await startBridge(mock.url, env, a.dataDir);
  });

  after(async () => {
    log.stop();
    await a?.close();
    if (!bClosed) await b?.close();
    await mock.stop();
  });

  it('authenticates from its cache: no database round trip for keys or users once warm', async () => {
    const dev = await a.addUser('hot@example.com', { team: 'red' });
    assert.equal((await ask(b, dev.key)).status, 200, 'warm-up');
    log.clear();
    for (let i = 0; i < 20; i++) assert.equal((await ask(b, dev.key)).status, 200);
    assert.equal(log.count(AUTH_SQL), 0, 'no key or user lookup');
    // Last-use times are written in one batched UPDATE per interval, not per request.
    assert.ok(log.count(TOUCH_SQL) <= 1, `${log.count(TOUCH_SQL)} last-use updates`);
    assert.equal(mock.messageRequests().length >= 21, true);
  });

  it('admits against budget leases: at most one budget round trip per request, none per request in the common case', async () => {
    const dev = await a.addUser('leased@example.com', { team: 'big' });
    const put = await a.api('PUT', '/api/v1/budgets', a.adminKey, {
      scope: 'team',
      subject: 'big',
      period: 'month',
      limitUsd: 100,
      action: 'block',
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal((await ask(b, dev.key)).status, 200, 'warm-up: B takes a lease');
    log.clear();
    const requests = 40;
    for (let i = 0; i < requests; i += 4)
      for (const r of await Promise.all([0, 1, 2, 3].map(() => ask(b, dev.key)))) assert.equal(r.status, 200);
    await b.bridge.recorder.drain();
    const budget = log.count(BUDGET_SQL);
    const auth = log.count(AUTH_SQL);
    // The numbers docs/performance.md quotes.
    console.log(
      `      ${requests} requests: ${budget} budget, ${auth} authentication, ${log.trips.length} round trips in all`,
    );
    assert.equal(auth, 0);
    assert.ok(budget <= requests, `${budget} budget round trips for ${requests} requests`);
    assert.ok(
      log.trips.filter((t) => /INSERT INTO budget_reservations/.test(t.text)).length < requests / 4,
      'requests do not each reserve in the database',
    );
  });

  it('refuses a key revoked on the other replica within a second', async () => {
    const dev = await a.addUser('revoked@example.com');
    // Replica B knows the key (cached), as it would a key in use.
    assert.equal((await ask(b, dev.key)).status, 200);
    assert.equal((await b.api('GET', '/api/v1/me', dev.key)).status, 200);
    const revoked = await a.api<KeyInfo>('DELETE', `/api/v1/keys/${dev.keyId}`, a.adminKey);
    assert.equal(revoked.status, 200);
    await within('replica B to refuse the revoked key', async () => {
      return (await b.api('GET', '/api/v1/me', dev.key)).status === 401;
    });
    const refused = await ask(b, dev.key);
    assert.equal(refused.status, 401, refused.body);
    assert.match(refused.body, /revoked/);
  });

  it("moves a user's team and role on the other replica within a second", async () => {
    const dev = await a.addUser('mover@example.com', { team: 'red' });
    const me = async (): Promise<User> =>
      (await b.api<{ user: User }>('GET', '/api/v1/me', dev.key)).body.user;
    assert.equal((await me()).team, 'red');
    assert.equal((await b.api('GET', '/api/v1/users', dev.key)).status, 403, 'a member');

    const patched = await a.api<User>('PATCH', '/api/v1/users/mover@example.com', a.adminKey, {
      team: 'blue',
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    await within('replica B to see the new team', async () => (await me()).team === 'blue');
    // The next request through B is attributed to the new team.
    assert.equal((await ask(b, dev.key)).status, 200);
    const recs = await b.interceptions(1, b.adminKey);
    const mine = recs.filter((r) => r.userId === dev.user.id);
    assert.equal(mine[0]?.team, 'blue');

    await a.api('PATCH', '/api/v1/users/mover@example.com', a.adminKey, { role: 'admin' });
    await within(
      'replica B to grant the new role',
      async () => (await b.api('GET', '/api/v1/users', dev.key)).status === 200,
    );
  });

  it("applies the new team's budget on the other replica after a team change", async () => {
    const dev = await a.addUser('budgeted@example.com', { team: 'red' });
    assert.equal((await ask(b, dev.key)).status, 200, 'warm: B caches the user in team red');
    const put = await a.api('PUT', '/api/v1/budgets', a.adminKey, {
      scope: 'team',
      subject: 'frozen',
      period: 'month',
      limitUsd: 0.000001,
      action: 'block',
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    // Spend the tiny budget (admitted: nothing spent yet), from another member of the team.
    const other = await a.addUser('frozen-member@example.com', { team: 'frozen' });
    assert.equal((await ask(a, other.key)).status, 200);
    await a.bridge.recorder.drain();
    await eventually(async () => (await ask(a, other.key)).status === 429, {
      what: 'the budget to be spent',
    });

    await a.api('PATCH', '/api/v1/users/budgeted@example.com', a.adminKey, { team: 'frozen' });
    await within(
      'replica B to apply the new team budget',
      async () => (await ask(b, dev.key)).status === 429,
    );
  });

  it('an admin made a member on another replica stops seeing other users on their open live socket', async () => {
    // A replica of its own with fast heartbeats: the socket re-checks its key (and its user) on each.
    const c = await startBridge(mock.url, { AIBRIDGE_DATABASE_URL: dbUrl }, a.dataDir, {
      liveEvents: { heartbeatMs: 200, closeGraceMs: 1500 },
    });
    try {
      const boss = await a.addUser('demoted@example.com', { role: 'admin' });
      const other = await a.addUser('watched@example.com');
      const socket = liveClient(c.url, { key: boss.key });
      await socket.next('hello');
      const seen = (await ask(c, other.key)).headers.get('x-aibridge-interception-id');
      await socket.next('interception.ended', (e) => e.interceptionId === seen);
      assert.equal(
        (await a.api('PATCH', '/api/v1/users/demoted@example.com', a.adminKey, { role: 'member' })).status,
        200,
      );
      await within(
        'replica C to see the new role',
        async () => (await c.api('GET', '/api/v1/users', boss.key)).status === 403,
      );
      await new Promise((r) => setTimeout(r, 600));
      const hidden = (await ask(c, other.key)).headers.get('x-aibridge-interception-id');
      const own = (await ask(c, boss.key)).headers.get('x-aibridge-interception-id');
      await socket.next('interception.ended', (e) => e.interceptionId === own);
      assert.equal(
        socket.events.some((e) => 'interceptionId' in e && e.interceptionId === hidden),
        false,
        "another user's request reached the demoted admin's socket",
      );
      await socket.close();
    } finally {
      await c.close();
    }
  });

  it("sends many requests' live events to the other replica in a few notifications, none lost", async () => {
    const dev = await a.addUser('live-batch@example.com');
    assert.equal((await ask(b, dev.key)).status, 200, 'warm-up');
    const onA = liveClient(a.url, { key: a.adminKey });
    try {
      await onA.next('hello');
      log.clear();
      const answers = await Promise.all(
        Array.from({ length: 20 }, () =>
          fetch(`${b.url}/anthropic/v1/messages`, {
            method: 'POST',
            headers: {
              'x-api-key': dev.key,
              'anthropic-version': '2023-06-01',
              'content-type': 'application/json',
            },
            body: JSON.stringify({
              model: 'claude-sonnet-4-6',
              max_tokens: 50,
              messages: [{ role: 'user', content: 'hi' }],
            }),
          }),
        ),
      );
      const ids = new Set(answers.map((r) => r.headers.get('x-aibridge-interception-id')));
      await Promise.all(answers.map((r) => r.text()));
      assert.equal(ids.size, 20);
      await eventually(
        async () =>
          ids.size ===
          onA.events.filter((e) => e.type === 'interception.ended' && ids.has(e.interceptionId)).length,
        { what: 'every request ended on replica A', timeoutMs: 5000 },
      );
      // 20 requests publish at least 40 events (started, ended); gathered, they need far fewer NOTIFYs.
      const notifies = log.count(/pg_notify/);
      assert.ok(notifies <= 10, `${notifies} notifications for 20 requests`);
    } finally {
      await onA.close();
    }
  });

  it('keeps its database connections through a quiet spell, so the next requests wait for none', async function () {
    this.timeout(30_000);
    const dev = await a.addUser('quiet@example.com', { team: 'calm' });
    // Several at once, so the replica holds several connections (records, notifications).
    await Promise.all(Array.from({ length: 8 }, () => ask(a, dev.key)));
    const db = new pg.Client({ connectionString: dbUrl });
    await db.connect();
    try {
      const backends = async (): Promise<number> =>
        (
          await db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity
              WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
          )
        ).rows[0]!.n;
      const busy = await backends();
      // node-postgres's default closes a connection idle for 10 s.
      await new Promise((r) => setTimeout(r, 11_000));
      const quiet = await backends();
      assert.ok(quiet >= busy, `connections after 11 s of quiet: ${quiet}, before: ${busy}`);
    } finally {
      await db.end();
    }
  });

  it('writes the batched last-use times when a replica closes', async () => {
    const dev = await a.addUser('lastuse@example.com');
    const before = new Date().toISOString();
    assert.equal((await ask(b, dev.key)).status, 200);
    await b.close();
    const keys = await a.api<{ items: KeyInfo[] }>(
      'GET',
      '/api/v1/users/lastuse@example.com/keys',
      a.adminKey,
    );
    const lastUsedAt = keys.body.items[0]?.lastUsedAt;
    assert.ok(lastUsedAt && lastUsedAt >= before, `lastUsedAt ${lastUsedAt}`);
    bClosed = true;
  });
});
