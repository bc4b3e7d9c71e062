import assert from 'node:assert/strict';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';

interface AccessLogItem {
  adminId: string;
  adminEmail: string;
  route: string;
  subjectUserId: string | null;
  query: Record<string, string>;
}

/** Workspace-template provisioner credentials: one permission, minting a short-lived key for a named user. */
describe('provisioner credentials', function () {
  this.timeout(30_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  const clock = new TestClock();
  let dev: { key: string; user: { id: string; email: string } };
  let secret = '';
  let provisionerId = '';

  before(async () => {
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url, {}, undefined, { clock });
    dev = await tb.addUser('workspace-dev@example.com', { team: 'platform' });
    const created = await tb.api<{ id: string; secret: string; prefix: string }>(
      'POST',
      '/api/v1/provisioners',
      tb.adminKey,
      { name: 'coder' },
    );
    assert.equal(created.status, 201);
    secret = created.body.secret;
    provisionerId = created.body.id;
  });
  after(async () => {
    await tb.close();
    await upstream.stop();
  });

  const mint = (body: unknown, email = dev.user.email, cred = secret) =>
    tb.api<{ key: string; id: string; expiresAt: string; error?: { code: string } }>(
      'POST',
      `/api/v1/users/${encodeURIComponent(email)}/keys`,
      cred,
      body,
    );

  it('only an admin creates one; the secret is shown once and stored only hashed', async () => {
    assert.match(secret, /^aibp_[A-Za-z0-9_-]{43}$/);
    const asMember = await tb.api('POST', '/api/v1/provisioners', dev.key, { name: 'sneaky' });
    assert.equal(asMember.status, 403);
    const list = await tb.api<{ items: Record<string, unknown>[] }>(
      'GET',
      '/api/v1/provisioners',
      tb.adminKey,
    );
    assert.equal(list.body.items.length, 1);
    assert.equal(list.body.items[0]!.name, 'coder');
    assert.ok(!('secret' in list.body.items[0]!) && !('hash' in list.body.items[0]!));
    assert.ok(!JSON.stringify(await tb.bridge.store.listDocs('provisioner')).includes(secret));
  });

  it('mints a key with a TTL for a named user; the key works, then expires', async () => {
    const res = await mint({ ttlSeconds: 3600, name: 'coder workspace dev-1' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(Date.parse(res.body.expiresAt), clock.now() + 3_600_000);
    const me = await tb.api<{ user: { email: string } }>('GET', '/api/v1/me', res.body.key);
    assert.equal(me.status, 200);
    assert.equal(me.body.user.email, dev.user.email);
    const served = await askMessages(tb.url, res.body.key, { max_tokens: 10 });
    assert.equal(served.status, 200);
    clock.advance(3_601_000);
    assert.equal((await tb.api('GET', '/api/v1/me', res.body.key)).status, 401);
  });

  it('requires a TTL of at most 30 days and nothing in its place', async () => {
    for (const body of [
      {},
      { ttlSeconds: 31 * 86_400 },
      { expiresAt: new Date(clock.now() + 60_000).toISOString() },
    ]) {
      const res = await mint(body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.error?.code, 'invalid_request');
    }
    assert.equal((await mint({ ttlSeconds: 3600 }, 'nobody@example.com')).status, 404);
  });

  it('is refused on every other route, even the same path with another method', async () => {
    const other = [
      ['GET', `/api/v1/users/${encodeURIComponent(dev.user.email)}/keys`],
      ['GET', '/api/v1/users'],
      ['GET', '/api/v1/me'],
      ['GET', '/api/v1/provisioners'],
      ['POST', '/api/v1/users'],
    ] as const;
    for (const [method, route] of other) {
      const res = await tb.api<{ error: { code: string } }>(
        method,
        route,
        secret,
        method === 'POST' ? {} : undefined,
      );
      assert.equal(res.status, 403, `${method} ${route}`);
      assert.equal(res.body.error.code, 'forbidden');
    }
    const proxied = await askMessages(tb.url, { authorization: `Bearer ${secret}` }, { max_tokens: 10 });
    assert.equal(proxied.status, 401);
  });

  it('records every use in the admin access log', async () => {
    const res = await mint({ ttlSeconds: 600 });
    assert.equal(res.status, 201);
    const log = await tb.api<{ items: AccessLogItem[] }>('GET', '/api/v1/audit/access-log', tb.adminKey);
    const entry = log.body.items.find((e) => e.query.keyId === res.body.id);
    assert.ok(entry, JSON.stringify(log.body.items));
    assert.equal(entry.adminId, provisionerId);
    assert.equal(entry.adminEmail, 'provisioner:coder');
    assert.equal(entry.route, 'POST /api/v1/users/:email/keys');
    assert.equal(entry.subjectUserId, dev.user.id);
    assert.equal(entry.query.ttlSeconds, '600');
    assert.ok(!JSON.stringify(log.body).includes(secret));
  });

  it('stops working once deleted', async () => {
    assert.equal((await tb.api('DELETE', `/api/v1/provisioners/${provisionerId}`, tb.adminKey)).status, 204);
    assert.equal((await mint({ ttlSeconds: 600 })).status, 401);
    assert.equal((await tb.api('DELETE', `/api/v1/provisioners/${provisionerId}`, tb.adminKey)).status, 404);
  });
});
