import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import Fastify from 'fastify';
import WebSocket from 'ws';
import { ADMIN_CSP, adminAssetRoutes, findAdminAssets } from '../../server/admin/assets';
import type { StoredSession } from '../../server/admin/sessions';
import type { UsageBucket } from '../../server/core/rollup';
import { OTHER, usageSeries } from '../../server/spend/usage-series';
import type { SessionInfo, UsageSeries } from '../../shared/admin';
import type { KeyInfo, User } from '../../shared/identity';
import type { Interception, Page } from '../../shared/interception';
import { CLOSE_CODES, EVENTS_PATH, EVENTS_SUBPROTOCOL } from '../../shared/protocol';
import { emptyUsage } from '../../shared/usage';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { liveClient } from '../helpers/live-client';

const CSRF = { 'x-aibridge-csrf': '1' };

interface Res<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

async function call<T = unknown>(
  url: string,
  method: string,
  headers: Record<string, string> = {},
  body?: unknown,
): Promise<Res<T>> {
  const h = { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) };
  const res = await fetch(url, {
    method,
    headers: h,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T, headers: res.headers };
}

/** The cookie a sign-in set, as a `Cookie` request header. */
function cookieOf(res: Res): string {
  const set = res.headers.get('set-cookie') ?? '';
  return set.split(';')[0]!;
}

async function ask(tb: TestBridge, key: string, prompt: string): Promise<void> {
  const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'claude-sonnet-4-6',
      max_tokens: 50,
      messages: [{ role: 'user', content: prompt }],
    }),
  });
  await res.text();
}

/** Opens a socket and says how the upgrade went: the hello's user, or the HTTP status it was refused with. */
function upgrade(url: string, headers: Record<string, string>): Promise<{ hello?: string; status?: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}${EVENTS_PATH}`, [EVENTS_SUBPROTOCOL], {
      headers,
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode });
      ws.terminate();
    });
    ws.on('error', () => undefined);
    ws.on('message', (data) => {
      const e = JSON.parse(data.toString()) as { type: string; user?: { email: string } };
      if (e.type === 'hello') {
        resolve({ hello: e.user?.email });
        ws.close();
      }
    });
    ws.on('close', (code) => resolve({ status: code }));
  });
}

describe('admin page sessions: POST/DELETE /api/v1/session, cookie auth, CSRF', function () {
  this.timeout(30_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let member: { key: string; user: User; keyId: string };
  let other: { key: string; user: User; keyId: string };

  before(async () => {
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url);
    member = await tb.addUser('member-session@example.com', { team: 'red' });
    other = await tb.addUser('other-session@example.com', { team: 'blue' });
    await ask(tb, member.key, 'member prompt');
    await ask(tb, other.key, 'other prompt');
    await tb.interceptions(2);
  });
  after(async () => {
    await tb.close();
    await upstream.stop();
  });

  const signIn = (key: string, headers: Record<string, string> = CSRF) =>
    call<SessionInfo>(`${tb.url}/api/v1/session`, 'POST', headers, { key });

  it('exchanges a key for an HttpOnly, SameSite=Strict cookie and never echoes the key', async () => {
    const res = await signIn(tb.adminKey);
    assert.equal(res.status, 201);
    const set = res.headers.get('set-cookie') ?? '';
    assert.match(set, /^aibridge_session=aibs_[A-Za-z0-9_-]{43}; /);
    assert.match(set, /; HttpOnly(;|$)/);
    assert.match(set, /; SameSite=Strict(;|$)/);
    assert.match(set, /; Path=\/(;|$)/);
    assert.match(set, /; Max-Age=43200(;|$)/);
    assert.doesNotMatch(set, /Secure/, 'plain http: a Secure cookie would never come back');
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(res.body.user.role, 'admin');
    assert.ok(res.body.key.prefix.startsWith('aib_'));
    const raw = JSON.stringify(res.body) + [...res.headers].join('\n');
    assert.ok(!raw.includes(tb.adminKey), 'the key came back');
    // Only the token's hash is stored.
    const token = cookieOf(res).split('=')[1]!;
    const stored = await tb.bridge.store.listDocs<StoredSession>('admin_session');
    assert.ok(stored.length >= 1);
    assert.ok(!JSON.stringify(stored).includes(token), 'the token is stored as is');
    assert.ok(!tb.logs.join('').includes(token), 'the token reached the logs');
    assert.ok(!tb.logs.join('').includes(tb.adminKey), 'the key reached the logs');
  });

  it('refuses a sign-in without the CSRF header or from another origin, and a bad key, setting no cookie', async () => {
    const noHeader = await signIn(tb.adminKey, {});
    assert.equal(noHeader.status, 403);
    assert.deepEqual((noHeader.body as unknown as { error: { code: string } }).error.code, 'csrf_refused');
    assert.equal(noHeader.headers.get('set-cookie'), null);
    const foreign = await signIn(tb.adminKey, { ...CSRF, origin: 'https://evil.example' });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.headers.get('set-cookie'), null);
    const bad = await signIn(`aib_${'x'.repeat(43)}`);
    assert.equal(bad.status, 401);
    assert.equal(bad.headers.get('set-cookie'), null);
  });

  it('accepts the cookie on reads; mutations need the CSRF header and the same origin; keys are unaffected', async () => {
    const cookie = cookieOf(await signIn(tb.adminKey));
    const me = await call<{ user: User }>(`${tb.url}/api/v1/me`, 'GET', { cookie });
    assert.equal(me.status, 200);
    assert.equal(me.body.user.role, 'admin');

    const create = (headers: Record<string, string>, email: string) =>
      call<{ error?: { code: string } }>(`${tb.url}/api/v1/users`, 'POST', headers, { email });
    const noCsrf = await create({ cookie }, 'csrf-1@example.com');
    assert.equal(noCsrf.status, 403);
    assert.equal(noCsrf.body.error?.code, 'csrf_refused');
    const crossSite = await create({ cookie, ...CSRF, origin: 'http://evil.example' }, 'csrf-2@example.com');
    assert.equal(crossSite.status, 403);
    assert.equal(crossSite.body.error?.code, 'csrf_refused');
    assert.equal((await tb.api('GET', '/api/v1/users', tb.adminKey)).status, 200);
    const users = (await tb.api<{ items: User[] }>('GET', '/api/v1/users', tb.adminKey)).body.items;
    assert.ok(!users.some((u) => u.email.startsWith('csrf-')), 'a refused mutation happened anyway');

    const host = new URL(tb.url).host;
    const ok = await create({ cookie, ...CSRF, origin: `http://${host}` }, 'csrf-3@example.com');
    assert.equal(ok.status, 201);
    // A bridge key needs no CSRF header: scripts and the CLI work as before.
    const byKey = await call(
      `${tb.url}/api/v1/users`,
      'POST',
      { authorization: `Bearer ${tb.adminKey}` },
      {
        email: 'csrf-4@example.com',
      },
    );
    assert.equal(byKey.status, 201);
    // A key wins over a cookie: a bad key with a good cookie is still a bad key.
    const badKey = await call(`${tb.url}/api/v1/me`, 'GET', { cookie, authorization: 'Bearer nope' });
    assert.equal(badKey.status, 401);
  });

  it('signing out ends the session on the server, and clears the cookie', async () => {
    const cookie = cookieOf(await signIn(tb.adminKey));
    assert.equal((await call(`${tb.url}/api/v1/me`, 'GET', { cookie })).status, 200);
    const refused = await call(`${tb.url}/api/v1/session`, 'DELETE', { cookie });
    assert.equal(refused.status, 403, 'sign-out without the CSRF header');
    const out = await call(`${tb.url}/api/v1/session`, 'DELETE', { cookie, ...CSRF });
    assert.equal(out.status, 204);
    assert.match(out.headers.get('set-cookie') ?? '', /^aibridge_session=; .*Max-Age=0/);
    // The old cookie no longer works, even if a browser kept it.
    const after = await call<{ error: { code: string } }>(`${tb.url}/api/v1/me`, 'GET', { cookie });
    assert.equal(after.status, 401);
    assert.equal(after.body.error.code, 'unauthorized');
    const forged = await call(`${tb.url}/api/v1/me`, 'GET', {
      cookie: `aibridge_session=aibs_${'A'.repeat(43)}`,
    });
    assert.equal(forged.status, 401);
  });

  it('two different session cookies in one request are signed out, not the first one taken (cookie tossing)', async () => {
    // Another port of the host can plant a cookie under a longer path; the browser sends it first.
    const planted = cookieOf(await signIn(other.key));
    const own = cookieOf(await signIn(member.key));
    for (const cookie of [`${planted}; ${own}`, `${own}; theme=dark; ${planted}`]) {
      const me = await call<{ error: { code: string; message: string } }>(`${tb.url}/api/v1/me`, 'GET', {
        cookie,
      });
      assert.equal(me.status, 401, cookie);
      assert.equal(me.body.error.code, 'unauthorized');
      assert.match(me.body.error.message, /Two admin session cookies/);
      const host = new URL(tb.url).host;
      const socket = liveClient(tb.url, { headers: { cookie, origin: `http://${host}` } });
      assert.equal((await socket.closed).code, CLOSE_CODES.unauthorized.code);
    }
    // The same cookie twice is one session.
    const twice = await call<User>(`${tb.url}/api/v1/me`, 'GET', { cookie: `${own}; ${own}` });
    assert.equal(twice.status, 200);
    // Signing out with both ends both: the browser's own session is not left open behind it.
    const out = await call(`${tb.url}/api/v1/session`, 'DELETE', { cookie: `${planted}; ${own}`, ...CSRF });
    assert.equal(out.status, 204);
    assert.equal((await call(`${tb.url}/api/v1/me`, 'GET', { cookie: own })).status, 401);
    assert.equal((await call(`${tb.url}/api/v1/me`, 'GET', { cookie: planted })).status, 401);
  });

  it("signing out closes the live-events sockets opened with that session at once, and nobody else's", async () => {
    const host = new URL(tb.url).host;
    const cookie = cookieOf(await signIn(member.key));
    const keep = cookieOf(await signIn(member.key));
    const c = liveClient(tb.url, { headers: { cookie, origin: `http://${host}` } });
    const kept = liveClient(tb.url, { headers: { cookie: keep, origin: `http://${host}` } });
    await c.next('hello');
    await kept.next('hello');
    const t0 = Date.now();
    assert.equal((await call(`${tb.url}/api/v1/session`, 'DELETE', { cookie, ...CSRF })).status, 204);
    const { code } = await c.closed;
    assert.equal(code, CLOSE_CODES.unauthorized.code);
    // The heartbeat is 30 s: closed by the sign-out, not by it.
    assert.ok(Date.now() - t0 < 5_000, `${Date.now() - t0} ms`);
    await ask(tb, member.key, 'still watched');
    assert.equal((await kept.next('interception.ended')).userEmail, member.user.email);
    await kept.close();
  });

  it('a client that sends messages on the live-events socket is closed (1008), its data not read', async () => {
    const c = liveClient(tb.url, { headers: { authorization: `Bearer ${member.key}` } });
    await c.next('hello');
    for (let i = 0; i < 50; i++) c.ws.send('x'.repeat(1000));
    const { code } = await c.closed;
    assert.equal(code, CLOSE_CODES.unexpectedMessage.code);
  });

  it('revoking the key a session was opened with signs the browser out', async () => {
    const spare = await tb.api<{ key: string; id: string }>(
      'POST',
      `/api/v1/users/${encodeURIComponent(member.user.email)}/keys`,
      tb.adminKey,
      { name: 'browser' },
    );
    const cookie = cookieOf(await signIn(spare.body.key));
    assert.equal((await call(`${tb.url}/api/v1/me`, 'GET', { cookie })).status, 200);
    await tb.api('DELETE', `/api/v1/keys/${spare.body.id}`, tb.adminKey);
    assert.equal((await call(`${tb.url}/api/v1/me`, 'GET', { cookie })).status, 401);
  });

  it('members see their own usage, sessions and keys; admins see everyone', async () => {
    const memberCookie = cookieOf(await signIn(member.key));
    const adminCookie = cookieOf(await signIn(tb.adminKey));
    const get = <T>(route: string, cookie: string) => call<T>(`${tb.url}${route}`, 'GET', { cookie });

    assert.equal((await get('/api/v1/users', memberCookie)).status, 403);
    assert.equal((await get('/api/v1/budgets', memberCookie)).status, 403);
    const myKeys = await get<{ items: KeyInfo[] }>('/api/v1/me/keys', memberCookie);
    assert.equal(myKeys.status, 200);
    assert.ok(myKeys.body.items.length >= 1);
    assert.ok(myKeys.body.items.every((k) => k.userId === member.user.id));
    assert.ok(myKeys.body.items.every((k) => !('hash' in k) && !('key' in k)));

    const mine = await get<Page<Interception>>('/api/v1/interceptions', memberCookie);
    assert.deepEqual([...new Set(mine.body.items.map((r) => r.userEmail))], [member.user.email]);
    const all = await get<Page<Interception>>('/api/v1/interceptions', adminCookie);
    assert.ok(all.body.items.some((r) => r.userEmail === other.user.email));

    const memberSeries = await get<UsageSeries>('/api/v1/usage/series?by=user&step=hour', memberCookie);
    assert.equal(memberSeries.status, 200);
    assert.deepEqual(
      memberSeries.body.series.map((s) => s.key),
      [member.user.email],
    );
    const adminSeries = await get<UsageSeries>('/api/v1/usage/series?by=team&step=hour', adminCookie);
    assert.deepEqual(adminSeries.body.series.map((s) => s.key).sort(), ['blue', 'red']);
    assert.equal(adminSeries.body.times.length, adminSeries.body.series[0]!.costUsd.length);
    assert.equal((await get(`/api/v1/usage/series?user=${other.user.email}`, memberCookie)).status, 403);
    assert.equal((await get('/api/v1/usage/series?team=blue', memberCookie)).status, 403);
  });

  it('accepts the cookie on the live-events socket only from the same origin', async () => {
    const cookie = cookieOf(await signIn(member.key));
    const host = new URL(tb.url).host;
    assert.deepEqual(await upgrade(tb.url, { cookie, origin: `http://${host}` }), {
      hello: member.user.email,
    });
    assert.deepEqual(await upgrade(tb.url, { cookie, origin: 'https://evil.example' }), { status: 403 });
    assert.deepEqual(await upgrade(tb.url, { cookie }), { status: 403 }, 'no Origin at all');
    // A key on the socket needs no Origin (the extension, scripts).
    assert.deepEqual(await upgrade(tb.url, { authorization: `Bearer ${other.key}` }), {
      hello: other.user.email,
    });

    // A member's cookie socket sees only the member's events.
    const c = liveClient(tb.url, { headers: { cookie, origin: `http://${host}` } });
    await c.next('hello');
    // Registered after the bridge's own listener: a record listed here has had its events published.
    const finished: string[] = [];
    tb.bridge.recorder.onFinished((rec) => finished.push(rec.userEmail));
    await ask(tb, other.key, 'not for the member');
    await eventually(() => finished.includes(other.user.email), {
      what: "the other user's events published",
    });
    await ask(tb, member.key, 'for the member');
    // The socket delivers in publish order: once the member's own event is here, the other's would be too.
    const ended = await c.next('interception.ended');
    assert.equal(ended.userEmail, member.user.email);
    assert.ok(
      c.events.every((e) => e.type === 'hello' || ('userEmail' in e && e.userEmail === member.user.email)),
    );
    await c.close();
  });

  it('marks the cookie Secure when AIBRIDGE_PUBLIC_URL is https, and lasts AIBRIDGE_ADMIN_SESSION_HOURS', async () => {
    const secure = await startBridge(upstream.url, {
      AIBRIDGE_PUBLIC_URL: 'https://bridge.example.com',
      AIBRIDGE_ADMIN_SESSION_HOURS: '2',
    });
    try {
      const res = await call(
        `${secure.url}/api/v1/session`,
        'POST',
        { ...CSRF, origin: 'https://bridge.example.com' },
        {
          key: secure.adminKey,
        },
      );
      assert.equal(res.status, 201);
      assert.match(res.headers.get('set-cookie') ?? '', /; Secure$/);
      assert.match(res.headers.get('set-cookie') ?? '', /; Max-Age=7200(;|$)/);
      const left = Date.parse((res.body as SessionInfo).expiresAt) - Date.now();
      assert.ok(left > 7_100_000 && left <= 7_200_000, `expires in ${left} ms`);
    } finally {
      await secure.close();
    }
  });
});

describe('admin page assets', () => {
  it('serves the page with the CSP, hashed assets cached for a year, and nothing outside the build', async () => {
    const dir = await tempDir('aibridge-admin-assets-');
    await fs.mkdir(path.join(dir, 'assets'));
    await fs.writeFile(
      path.join(dir, 'index.html'),
      '<!doctype html><script src="/admin/assets/app-ABC.js"></script>',
    );
    await fs.writeFile(path.join(dir, 'assets', 'app-ABC.js'), 'console.log(1)');
    await fs.writeFile(path.join(dir, 'secret.txt'), 'not served');
    const app = Fastify();
    await app.register(adminAssetRoutes(dir));
    try {
      const page = await app.inject({ url: '/admin' });
      assert.equal(page.statusCode, 200);
      assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
      assert.equal(page.headers['content-security-policy'], ADMIN_CSP);
      assert.match(ADMIN_CSP, /script-src 'self';/);
      assert.doesNotMatch(ADMIN_CSP, /unsafe-inline|unsafe-eval/);
      assert.equal(page.headers['cache-control'], 'no-cache');
      assert.equal(page.headers['x-frame-options'], 'DENY');
      const again = await app.inject({
        url: '/admin/',
        headers: { 'if-none-match': String(page.headers.etag) },
      });
      assert.equal(again.statusCode, 304);
      const js = await app.inject({ url: '/admin/assets/app-ABC.js' });
      assert.equal(js.statusCode, 200);
      assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
      assert.equal(js.headers['cache-control'], 'public, max-age=31536000, immutable');
      for (const url of [
        '/admin/assets/../secret.txt',
        '/admin/assets/%2e%2e/secret.txt',
        '/admin/assets/nope.js',
      ])
        assert.equal((await app.inject({ url })).statusCode, 404, url);
      // The first candidate that holds a built page wins (beside the bundle, the binary, the cwd).
      assert.equal(findAdminAssets([path.join(dir, 'assets'), dir]), dir);
      assert.equal(findAdminAssets([path.join(dir, 'assets')]), undefined);
      const missing = Fastify();
      await missing.register(adminAssetRoutes(undefined));
      const res = await missing.inject({ url: '/admin' });
      assert.equal(res.statusCode, 404);
      assert.match(res.body, /npm run build/);
      await missing.close();
    } finally {
      await app.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('usage series (unit)', () => {
  const bucket = (hour: string, team: string | null, model: string, costUsd: number): UsageBucket => ({
    hour,
    userId: 'u',
    userEmail: 'u@example.com',
    team,
    provider: 'anthropic',
    model,
    client: 'x',
    requests: 1,
    usage: emptyUsage(),
    costUsd,
    unpricedRequests: 0,
    userBilledCostUsd: 0,
    userBilledRequests: 0,
  });

  it('puts each bucket in its step, fills empty steps with 0, and folds small groups into (other)', async () => {
    const since = new Date('2026-01-01T00:00:00Z');
    const until = new Date('2026-01-04T00:00:00Z');
    const buckets = [
      bucket('2026-01-01T05:00:00.000Z', 'a', 'm1', 1),
      bucket('2026-01-01T07:00:00.000Z', 'a', 'm1', 2),
      bucket('2026-01-03T23:00:00.000Z', null, 'm2', 0.5),
      bucket('2026-01-05T00:00:00.000Z', 'late', 'm2', 9),
    ];
    const s = await usageSeries(buckets, 'team', 'day', since, until);
    assert.deepEqual(s.times, [
      '2026-01-01T00:00:00.000Z',
      '2026-01-02T00:00:00.000Z',
      '2026-01-03T00:00:00.000Z',
    ]);
    assert.deepEqual(s.series, [
      { key: 'a', costUsd: [3, 0, 0], requests: [2, 0, 0] },
      { key: '(none)', costUsd: [0, 0, 0.5], requests: [0, 0, 1] },
    ]);
    const many = Array.from({ length: 12 }, (_, i) =>
      bucket('2026-01-01T00:00:00.000Z', `t${i}`, 'm', 12 - i),
    );
    const folded = await usageSeries(many, 'team', 'day', since, until);
    assert.equal(folded.series.length, 8);
    assert.equal(folded.series.at(-1)!.key, OTHER);
    assert.equal(folded.series.at(-1)!.costUsd[0], 1 + 2 + 3 + 4 + 5);
  });
});
