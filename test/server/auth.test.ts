import assert from 'node:assert/strict';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';

const BODY = JSON.stringify({
  model: 'claude-sonnet-4-6',
  max_tokens: 5,
  messages: [{ role: 'user', content: 'hi' }],
});

describe('authentication and access', () => {
  let mock: AnthropicMock;
  let tb: TestBridge;
  const clock = new TestClock();

  before(async () => {
    mock = await new AnthropicMock().start();
    tb = await startBridge(mock.url, {}, undefined, { clock });
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  async function message(
    headers: Record<string, string>,
  ): Promise<{ status: number; body: { type: string; error: { type: string; message: string } } }> {
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...headers },
      body: BODY,
    });
    return { status: res.status, body: (await res.json()) as never };
  }

  async function refused(headers: Record<string, string>, messagePattern: RegExp): Promise<void> {
    const before = mock.requests.length;
    const res = await message(headers);
    assert.equal(res.status, 401);
    assert.equal(res.body.type, 'error');
    assert.equal(res.body.error.type, 'authentication_error');
    assert.match(res.body.error.message, messagePattern);
    assert.equal(mock.requests.length, before, 'upstream must not be contacted');
  }

  it('refuses a request without a key, naming every place a key may be sent', async () => {
    await refused({}, /bridge key is required/);
    const res = await message({});
    // A Gemini client sends x-goog-api-key or ?key=; an Azure one api-key.
    for (const place of ['x-api-key', 'Authorization: Bearer', 'api-key', 'x-goog-api-key', '?key='])
      assert.ok(res.body.error.message.includes(place), `${place} in: ${res.body.error.message}`);
  });

  it('refuses a body type the admin API does not take with 415 unsupported_media_type, text included, and creates nothing', async () => {
    for (const type of ['text/plain', 'text/plain; charset=utf-8', 'application/xml']) {
      const res = await fetch(`${tb.url}/api/v1/users`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tb.adminKey}`, 'content-type': type },
        body: JSON.stringify({ email: 'text-body@example.com' }),
      });
      const body = (await res.json()) as { error: { code: string } };
      assert.equal(res.status, 415, type);
      assert.equal(body.error.code, 'unsupported_media_type', type);
    }
    const users = await tb.api<{ items: { email: string }[] }>('GET', '/api/v1/users', tb.adminKey);
    assert.ok(!users.body.items.some((u) => u.email === 'text-body@example.com'));
  });

  it('refuses a wrong key, malformed or well-formed', async () => {
    // A provider's own key where the bridge key goes (ANTHROPIC_API_KEY left set beside the bridge
    // key in ANTHROPIC_AUTH_TOKEN): named by its kind, the key itself never echoed.
    await refused(
      { 'x-api-key': 'sk-ant-api03-personal-key-xyz' },
      /looks like a provider key, Anthropic's \(sk-ant-…\).*unset ANTHROPIC_API_KEY/,
    );
    await refused({ authorization: 'Bearer sk-proj-personal' }, /OpenAI's \(sk-…\)/);
    const echoed = await message({ 'x-api-key': 'sk-ant-api03-personal-key-xyz' });
    assert.doesNotMatch(JSON.stringify(echoed.body), /personal-key-xyz/);
    await refused({ 'x-api-key': 'not-a-key-at-all' }, /not a valid bridge key/);
    await refused({ authorization: `Bearer aib_${'A'.repeat(43)}` }, /not a valid bridge key/);
  });

  it('refuses a revoked key on the very next request', async () => {
    const dev = await tb.addUser('revoked@example.com');
    assert.equal((await message({ 'x-api-key': dev.key })).status, 200);
    const res = await tb.api('DELETE', `/api/v1/keys/${dev.keyId}`, tb.adminKey);
    assert.equal(res.status, 200);
    await refused({ 'x-api-key': dev.key }, /revoked/);
    await refused({ authorization: `Bearer ${dev.key}` }, /revoked/);
  });

  it('refuses an expired key', async () => {
    await tb.api('POST', '/api/v1/users', tb.adminKey, { email: 'expiring@example.com' });
    const expiresAt = new Date(clock.now() + 600_000).toISOString();
    const k = await tb.api<{ key: string; expiresAt: string }>(
      'POST',
      '/api/v1/users/expiring@example.com/keys',
      tb.adminKey,
      { expiresAt },
    );
    assert.equal(k.status, 201);
    assert.equal(k.body.expiresAt, expiresAt);
    assert.equal((await message({ 'x-api-key': k.body.key })).status, 200);
    clock.advance(599_000);
    assert.equal((await message({ 'x-api-key': k.body.key })).status, 200, 'still valid a second before');
    clock.advance(1000);
    await refused({ 'x-api-key': k.body.key }, /expired/);
  });

  it("does not let a member read another user's records, users or keys", async () => {
    const alice = await tb.addUser('alice@example.com');
    const bob = await tb.addUser('bob@example.com');
    assert.equal((await message({ 'x-api-key': alice.key })).status, 200);
    await tb.interceptions(1, alice.key);
    const before = mock.requests.length;

    const other = await tb.api<{ error: { code: string } }>(
      'GET',
      '/api/v1/interceptions?user=alice@example.com',
      bob.key,
    );
    assert.equal(other.status, 403);
    assert.equal(other.body.error.code, 'forbidden');
    const byId = await tb.api('GET', `/api/v1/interceptions?user=${alice.user.id}`, bob.key);
    assert.equal(byId.status, 403);
    const own = await tb.api<{ items: { userId: string }[] }>('GET', '/api/v1/interceptions', bob.key);
    assert.equal(own.status, 200);
    assert.deepEqual(own.body.items, [], 'a member sees only their own records');
    const aliceOwn = await tb.api<{ items: { userId: string }[] }>('GET', '/api/v1/interceptions', alice.key);
    assert.ok(aliceOwn.body.items.length >= 1);
    assert.ok(aliceOwn.body.items.every((i) => i.userId === alice.user.id));

    assert.equal((await tb.api('GET', '/api/v1/users', bob.key)).status, 403);
    assert.equal((await tb.api('POST', '/api/v1/users', bob.key, { email: 'x@example.com' })).status, 403);
    assert.equal((await tb.api('POST', '/api/v1/users/bob@example.com/keys', bob.key, {})).status, 403);
    assert.equal((await tb.api('DELETE', `/api/v1/keys/${alice.keyId}`, bob.key)).status, 403);
    assert.equal(mock.requests.length, before);
  });

  it('refuses admin and member API routes without a valid key, with a stable code', async () => {
    for (const [method, route] of [
      ['GET', '/api/v1/me'],
      ['GET', '/api/v1/users'],
      ['POST', '/api/v1/users'],
      ['GET', '/api/v1/interceptions'],
      ['DELETE', '/api/v1/keys/key_x'],
    ] as const) {
      for (const key of [null, 'aib_nope']) {
        const res = await tb.api<{ error: { code: string } }>(method, route, key);
        assert.equal(res.status, 401, `${method} ${route} with ${key}`);
        assert.equal(res.body.error.code, 'unauthorized');
      }
    }
  });

  it('answers /api/v1/me for any valid key, without the key hash', async () => {
    const carol = await tb.addUser('carol@example.com', { team: 'data' });
    const me = await tb.api<{ user: { email: string; team: string }; key: Record<string, unknown> }>(
      'GET',
      '/api/v1/me',
      carol.key,
    );
    assert.equal(me.status, 200);
    assert.equal(me.body.user.email, 'carol@example.com');
    assert.equal(me.body.user.team, 'data');
    assert.equal(me.body.key.id, carol.keyId);
    assert.equal(me.body.key.hash, undefined);
    assert.ok(!JSON.stringify(me.body).includes(carol.key));
  });
});

describe('admin API input', () => {
  let mock: AnthropicMock;
  let tb: TestBridge;
  before(async () => {
    mock = await new AnthropicMock().start();
    tb = await startBridge(mock.url);
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  it('gives bad input a 4xx with a stable code', async () => {
    const cases: [string, string, unknown, number, string][] = [
      ['POST', '/api/v1/users', { email: 'not-an-email' }, 400, 'invalid_request'],
      ['POST', '/api/v1/users', { email: 'a@b.co', role: 'root' }, 400, 'invalid_request'],
      ['POST', '/api/v1/users', { email: 'a@b.co', extra: 1 }, 400, 'invalid_request'],
      ['POST', '/api/v1/users/nobody@example.com/keys', {}, 404, 'user_not_found'],
      ['POST', '/api/v1/users/admin@localhost/keys', { expiresAt: 'tomorrow' }, 400, 'invalid_request'],
      [
        'POST',
        '/api/v1/users/admin@localhost/keys',
        { expiresAt: '2001-01-01T00:00:00Z' },
        400,
        'invalid_request',
      ],
      ['DELETE', '/api/v1/keys/key_missing', undefined, 404, 'key_not_found'],
      ['GET', '/api/v1/interceptions?limit=0', undefined, 400, 'invalid_request'],
      ['GET', '/api/v1/interceptions?since=yesterday', undefined, 400, 'invalid_request'],
      ['GET', '/api/v1/interceptions?cursor=bogus', undefined, 400, 'invalid_cursor'],
      ['GET', '/api/v1/nothing-here', undefined, 404, 'not_found'],
    ];
    for (const [method, route, body, status, code] of cases) {
      const res = await tb.api<{ error: { code: string; message: string } }>(
        method,
        route,
        tb.adminKey,
        body,
      );
      assert.equal(
        res.status,
        status,
        `${method} ${route} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`,
      );
      assert.equal(res.body.error.code, code, `${method} ${route}`);
      assert.ok(res.body.error.message.length > 0);
      assert.equal(res.headers.get('x-aibridge-error-code'), code, `${method} ${route}: the code header`);
    }
    // Messages a person can act on: the allowed values of a union, the unknown field by name.
    const role = await tb.api<{ error: { message: string } }>('POST', '/api/v1/users', tb.adminKey, {
      email: 'a@b.co',
      role: 'root',
    });
    assert.equal(role.body.error.message, 'body/role must be one of "admin", "member"');
    const extra = await tb.api<{ error: { message: string } }>('POST', '/api/v1/users', tb.adminKey, {
      email: 'a@b.co',
      extra: 1,
    });
    assert.equal(extra.body.error.message, 'body has an unknown field "extra"');
    const dup1 = await tb.api('POST', '/api/v1/users', tb.adminKey, { email: 'Dup@Example.com' });
    assert.equal(dup1.status, 201);
    const dup2 = await tb.api<{ error: { code: string } }>('POST', '/api/v1/users', tb.adminKey, {
      email: 'dup@example.com',
    });
    assert.equal(dup2.status, 409);
    assert.equal(dup2.body.error.code, 'user_exists');
    // The Kelvin sign lower-cases to `k`: stored, it would be dup@…'s twin under another spelling.
    const kelvin = await tb.api<{ error: { code: string; message: string } }>(
      'POST',
      '/api/v1/users',
      tb.adminKey,
      {
        email: '\u212Aelvin@example.com',
      },
    );
    assert.equal(kelvin.status, 400);
    assert.equal(kelvin.body.error.code, 'invalid_request');
    assert.equal(await tb.bridge.store.getUserByEmail('kelvin@example.com'), undefined);

    const raw = await fetch(`${tb.url}/api/v1/users`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tb.adminKey}`, 'content-type': 'application/json' },
      body: '{"email": ',
    });
    assert.equal(raw.status, 400);
    assert.equal(((await raw.json()) as { error: { code: string } }).error.code, 'invalid_json');
  });

  it("changes a user's team and role, and the next request sees it; never leaves no admin", async () => {
    const mover = await tb.addUser('mover@example.com', { team: 'red' });
    const res = await tb.api<{ team: string; role: string; email: string }>(
      'PATCH',
      '/api/v1/users/mover@example.com',
      tb.adminKey,
      { team: 'blue', role: 'admin' },
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual([res.body.email, res.body.team, res.body.role], ['mover@example.com', 'blue', 'admin']);
    const me = await tb.api<{ user: { team: string; role: string } }>('GET', '/api/v1/me', mover.key);
    assert.deepEqual([me.body.user.team, me.body.user.role], ['blue', 'admin']);
    // The mover is an admin now, so demoting them is fine; demoting the only other admin then is not.
    assert.equal(
      (await tb.api('PATCH', '/api/v1/users/mover@example.com', tb.adminKey, { role: 'member' })).status,
      200,
    );
    const last = await tb.api<{ error: { code: string } }>(
      'PATCH',
      '/api/v1/users/admin@localhost',
      tb.adminKey,
      {
        role: 'member',
      },
    );
    assert.equal(last.status, 409);
    assert.equal(last.body.error.code, 'last_admin');
    // A team typed with stray spaces is the team, not one of its own outside its rules.
    const spaced = await tb.api<{ team: string }>('PATCH', '/api/v1/users/mover@example.com', tb.adminKey, {
      team: '  Platform   Eng ',
    });
    assert.equal(spaced.body.team, 'Platform   Eng');
    const created = await tb.api<{ team: string }>('POST', '/api/v1/users', tb.adminKey, {
      email: 'spaced@example.com',
      team: 'Platform Eng ',
    });
    assert.equal(created.body.team, 'Platform Eng');
    for (const [body, status, code] of [
      [{}, 400, 'invalid_request'],
      [{ team: '   ' }, 400, 'invalid_request'],
      [{ role: 'root' }, 400, 'invalid_request'],
      [{ email: 'x@y.z' }, 400, 'invalid_request'],
    ] as const) {
      const bad = await tb.api<{ error: { code: string } }>(
        'PATCH',
        '/api/v1/users/mover@example.com',
        tb.adminKey,
        body,
      );
      assert.deepEqual([bad.status, bad.body.error.code], [status, code], JSON.stringify(body));
    }
    const missing = await tb.api<{ error: { code: string } }>(
      'PATCH',
      '/api/v1/users/nobody@example.com',
      tb.adminKey,
      {
        team: 'x',
      },
    );
    assert.deepEqual([missing.status, missing.body.error.code], [404, 'user_not_found']);
  });

  it('pages interceptions newest first with a cursor', async () => {
    const dev = await tb.addUser('pager@example.com');
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': dev.key },
        body: JSON.stringify({
          model: 'claude-sonnet-4-6',
          max_tokens: 5,
          messages: [{ role: 'user', content: `prompt ${i}` }],
        }),
      });
      await res.arrayBuffer();
    }
    await tb.interceptions(5, dev.key);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor ? `&cursor=${cursor}` : '';
      const page: { status: number; body: { items: { prompt: string }[]; nextCursor: string | null } } =
        await tb.api('GET', `/api/v1/interceptions?user=pager@example.com&limit=2${q}`, tb.adminKey);
      assert.equal(page.status, 200);
      assert.ok(page.body.items.length <= 2);
      seen.push(...page.body.items.map((i) => i.prompt));
      cursor = page.body.nextCursor;
    } while (cursor);
    assert.deepEqual(seen, ['prompt 4', 'prompt 3', 'prompt 2', 'prompt 1', 'prompt 0']);
    const filtered = await tb.api<{ items: unknown[] }>(
      'GET',
      '/api/v1/interceptions?model=none&user=pager@example.com',
      tb.adminKey,
    );
    assert.deepEqual(filtered.body.items, []);
    const future = await tb.api<{ items: unknown[] }>(
      'GET',
      `/api/v1/interceptions?since=${new Date(Date.now() + 60_000).toISOString()}`,
      tb.adminKey,
    );
    assert.deepEqual(future.body.items, []);
  });
});
