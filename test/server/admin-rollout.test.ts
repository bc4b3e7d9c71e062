import assert from 'node:assert/strict';
import type { CreatedKey } from '../../shared/identity';
import type { SessionBudgetStatus } from '../../shared/spend';
import { type MockedBridge, startMockedBridge } from '../helpers/bridge';

const SCIM_TOKEN = 'scim-rollout-token-0123456789abcdefghijklmnopqrstuv';

/** What an admin types while rolling the bridge out, as the docs describe each step. */
describe('admin rollout inputs', function () {
  this.timeout(60_000);
  let mb: MockedBridge;

  before(async () => {
    mb = await startMockedBridge({ AIBRIDGE_SCIM_TOKEN: SCIM_TOKEN });
  });

  after(async () => {
    await mb.close();
  });

  it('a session cap on an email or user id that names no user is refused, not stored as a team cap', async () => {
    const { tb } = mb;
    for (const subject of ['ghost@example.com', 'usr_0123456789abcdef0123']) {
      const put = await tb.api<{ error: { code: string; message: string } }>(
        'PUT',
        '/api/v1/budgets',
        tb.adminKey,
        { scope: 'session', subject, limitUsd: 5, action: 'block' },
      );
      assert.equal(put.status, 404, JSON.stringify(put.body));
      assert.equal(put.body.error.code, 'user_not_found');
      assert.match(put.body.error.message, /create the user first/);
    }
    const list = await tb.api<{ items: SessionBudgetStatus[] }>('GET', '/api/v1/budgets', tb.adminKey);
    assert.deepEqual(list.body.items, []);

    // A team's name still makes a team cap, and an existing user a user cap, whatever the case.
    await tb.addUser('capped@example.com', { team: 'agents' });
    const team = await tb.api<SessionBudgetStatus>('PUT', '/api/v1/budgets', tb.adminKey, {
      scope: 'session',
      subject: 'not-yet-provisioned-team',
      limitUsd: 5,
    });
    assert.equal(team.status, 200, JSON.stringify(team.body));
    assert.equal(team.body.subjectKind, 'team');
    const user = await tb.api<SessionBudgetStatus>('PUT', '/api/v1/budgets', tb.adminKey, {
      scope: 'session',
      subject: 'Capped@Example.com',
      limitUsd: 5,
    });
    assert.equal(user.status, 200, JSON.stringify(user.body));
    assert.equal(user.body.subjectKind, 'user');
  });

  it('a key expiry given as a date alone is that day’s start, UTC, through the API as through the CLI', async () => {
    const { tb } = mb;
    await tb.addUser('dated@example.com');
    const day = new Date(Date.now() + 40 * 86_400_000).toISOString().slice(0, 10);
    const k = await tb.api<CreatedKey>('POST', '/api/v1/users/dated@example.com/keys', tb.adminKey, {
      expiresAt: day,
    });
    assert.equal(k.status, 201, JSON.stringify(k.body));
    assert.equal(k.body.expiresAt, `${day}T00:00:00.000Z`);
    const past = await tb.api<{ error: { code: string; message: string } }>(
      'POST',
      '/api/v1/users/dated@example.com/keys',
      tb.adminKey,
      { expiresAt: '2020-01-01' },
    );
    assert.equal(past.status, 400);
    assert.match(past.body.error.message, /in the future/);
  });

  it('SCIM answers under a base URL entered with a trailing slash (`/scim/v2//Users`, `/Users/`)', async () => {
    const { tb } = mb;
    const scim = (method: string, path: string, body?: unknown) =>
      fetch(tb.url + path, {
        method,
        headers: {
          authorization: `Bearer ${SCIM_TOKEN}`,
          'content-type': 'application/scim+json',
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    const created = await scim('POST', '/scim/v2//Users', {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
      userName: 'slash@example.com',
      active: true,
    });
    assert.equal(created.status, 201, await created.clone().text());
    const { id } = (await created.json()) as { id: string };
    const filter = encodeURIComponent('userName eq "slash@example.com"');
    for (const path of [`/scim/v2//Users?filter=${filter}`, `/scim/v2/Users/?filter=${filter}`]) {
      const found = await scim('GET', path);
      assert.equal(found.status, 200, path);
      assert.equal(((await found.json()) as { totalResults: number }).totalResults, 1, path);
    }
    const one = await scim('GET', `/scim/v2//Users/${id}/`);
    assert.equal(one.status, 200);
    const config = await scim('GET', '/scim/v2//ServiceProviderConfig');
    assert.equal(config.status, 200);
    // What is not a SCIM endpoint is still a SCIM 404.
    const none = await scim('GET', '/scim/v2//Nothing');
    assert.equal(none.status, 404);
  });

  it('a since after its until is refused on every report, search and export, not answered with nothing', async () => {
    const { tb } = mb;
    const window = 'since=2026-12-04&until=2026-12-01';
    for (const route of [
      `/api/v1/usage?groupBy=team&${window}`,
      `/api/v1/usage/top?${window}`,
      `/api/v1/usage/users?${window}`,
      `/api/v1/usage/series?${window}`,
      `/api/v1/interceptions?${window}`,
      `/api/v1/sessions?${window}`,
      `/api/v1/tool-calls?${window}`,
      `/api/v1/audit/export?format=csv&${window}`,
      `/api/v1/audit/export?kind=gateway-calls&${window}`,
    ]) {
      const r = await tb.api<{ error: { code: string; message: string } }>('GET', route, tb.adminKey);
      assert.equal(r.status, 400, route);
      assert.equal(r.body.error.code, 'invalid_request', route);
      assert.match(r.body.error.message, /since .* must be before until/, route);
    }
    // One bound alone, or a window in order, is served as before.
    const ok = await tb.api(
      'GET',
      '/api/v1/usage?groupBy=team&since=2026-12-01&until=2026-12-04',
      tb.adminKey,
    );
    assert.equal(ok.status, 200);
    const one = await tb.api('GET', '/api/v1/interceptions?since=2026-12-04', tb.adminKey);
    assert.equal(one.status, 200);
  });

  it('a number sent as a string too large for a number ("1e999") is refused, not stored as null', async () => {
    const { tb } = mb;
    await tb.addUser('limited@example.com', { team: 'finite' });
    for (const [route, body, where] of [
      [
        '/api/v1/budgets',
        { scope: 'org', period: 'day', limitUsd: '1e999', action: 'block' },
        'body/limitUsd',
      ],
      [
        '/api/v1/budgets',
        { scope: 'team', subject: 'finite', period: 'day', limitUsd: 'Infinity' },
        'body/limitUsd',
      ],
      ['/api/v1/prices/claude-sonnet-4-6', { input_mtok: '1e999', output_mtok: 15 }, 'body/input_mtok'],
      ['/api/v1/rate-limits', { scope: 'user', subject: 'limited@example.com', rpm: '1e999' }, 'body/rpm'],
    ] as const) {
      const r = await tb.api<{ error: { code: string; message: string } }>('PUT', route, tb.adminKey, body);
      assert.equal(r.status, 400, `${route} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.message, `${where} must be a finite number (it is too large to store).`);
    }
    const budgets = await tb.api<{ items: unknown[] }>('GET', '/api/v1/budgets', tb.adminKey);
    assert.equal(budgets.body.items.filter((b) => (b as { scope: string }).scope !== 'session').length, 0);
    // Numbers as strings that are numbers still work.
    const ok = await tb.api<{ limitUsd: number }>('PUT', '/api/v1/budgets', tb.adminKey, {
      scope: 'team',
      subject: 'finite',
      period: 'day',
      limitUsd: '250.5',
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.limitUsd, 250.5);
  });

  it('a team or budget subject of spaces alone is refused wherever the API takes one, as for users', async () => {
    const { tb } = mb;
    for (const [method, route, body] of [
      ['PUT', '/api/v1/teams/%20/models', { deny: ['claude-opus-*'] }],
      ['PUT', '/api/v1/teams/%20%20/capture', { level: 'none' }],
      ['PUT', '/api/v1/teams/%20/byok', { allowed: true }],
      ['PUT', '/api/v1/budgets', { scope: 'team', subject: '  ', period: 'day', limitUsd: 1 }],
      ['GET', '/api/v1/usage/users?team=%20', undefined],
      ['POST', '/api/v1/users', { email: 'blank-team@example.com', team: ' ' }],
    ] as const) {
      const r = await tb.api<{ error: { code: string; message: string } }>(method, route, tb.adminKey, body);
      assert.equal(r.status, 400, `${method} ${route} ${JSON.stringify(r.body)}`);
      assert.match(r.body.error.message, /cannot be blank/);
    }
    const policies = await tb.api<{ items: unknown[] }>('GET', '/api/v1/model-policies', tb.adminKey);
    assert.deepEqual(policies.body.items, []);
    // A name with spaces at its ends is still that name.
    const trimmed = await tb.api<{ team: string }>('PUT', '/api/v1/teams/%20spaced%20/models', tb.adminKey, {
      deny: ['x'],
    });
    assert.equal(trimmed.status, 200);
    assert.equal(trimmed.body.team, 'spaced');
  });

  it('a time the API cannot read says what it takes, with examples', async () => {
    const { tb } = mb;
    await tb.addUser('timely@example.com');
    const since = await tb.api<{ error: { code: string; message: string } }>(
      'GET',
      `/api/v1/interceptions?since=${encodeURIComponent('2026-12-03 10:00')}`,
      tb.adminKey,
    );
    assert.equal(since.status, 400);
    assert.equal(
      since.body.error.message,
      'querystring/since must be an ISO 8601 date and time with its offset (2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00) or a date alone (2026-11-01, that day’s start, UTC)',
    );
    const expiry = await tb.api<{ error: { code: string; message: string } }>(
      'POST',
      '/api/v1/users/timely@example.com/keys',
      tb.adminKey,
      { expiresAt: '2027-01-01T10:00' },
    );
    assert.equal(expiry.status, 400);
    assert.match(
      expiry.body.error.message,
      /^body\/expiresAt must be an ISO 8601 date and time with its offset \(/,
    );
    // A leap second is RFC 3339 but no JavaScript date: it answered 500 (an invalid date's toISOString).
    const member = await tb.addUser('leap@example.com');
    for (const [route, key] of [
      ['/api/v1/interceptions', tb.adminKey],
      ['/api/v1/audit/export', tb.adminKey],
      ['/api/v1/usage', tb.adminKey],
      ['/api/v1/usage/series', member.key],
      ['/api/v1/tool-calls', member.key],
    ] as const) {
      const leap = await tb.api<{ error: { code: string; message: string } }>(
        'GET',
        `${route}?since=${encodeURIComponent('2026-12-31T23:59:60Z')}`,
        key,
      );
      assert.equal(leap.status, 400, route);
      assert.equal(leap.body.error.code, 'invalid_request', route);
      assert.match(leap.body.error.message, /^querystring\/since must be an ISO 8601 date and time/, route);
    }
  });
});
