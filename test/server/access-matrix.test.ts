import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { RouteEntry } from '../../server/http/route-table';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { OpenAIMock } from '../helpers/openai-mock';
import { sessionCookie } from '../helpers/session';

type Who =
  | 'none'
  | 'malformed'
  | 'unknown'
  | 'revoked'
  | 'expired'
  | 'member'
  | 'admin'
  /** The admin page's session cookies (with the CSRF header the page sends): the same rules as the keys. */
  | 'member-session'
  | 'admin-session'
  /** A workspace template's provisioner credential: refused everywhere but the one route that mints keys. */
  | 'provisioner';
const BAD: Who[] = ['none', 'malformed', 'unknown', 'revoked', 'expired'];

/**
 * Generated from the bridge's own route table: every route, every kind of caller. A route added
 * without an access rule fails here.
 */
describe('the access matrix, from the route table', function () {
  this.timeout(60_000);
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;
  const keys = {} as Record<Who, string | undefined>;
  /** `Cookie` headers of the two sessions. */
  const cookies: Partial<Record<Who, string>> = {};
  let memberEmail = '';
  /** A spare key of the member's, for the owner-or-admin route `DELETE /api/v1/keys/:id`. */
  let spareKeyId = '';
  const clock = new TestClock();

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    tb = await startBridge(
      anthropic.url,
      {
        AIBRIDGE_OPENAI_BASE_URL: openai.url,
        AIBRIDGE_METRICS_TOKEN: '',
        // SCIM's routes exist only with a token; an admin key is accepted on them too.
        AIBRIDGE_SCIM_TOKEN: 'matrix-scim-token-0123456789abcdefghijklmnop',
      },
      undefined,
      { clock },
    );
    const member = await tb.addUser('matrix-member@example.com', { team: 'matrix' });
    memberEmail = member.user.email;
    spareKeyId = (await tb.api<{ id: string }>('POST', `/api/v1/users/${memberEmail}/keys`, tb.adminKey, {}))
      .body.id;
    const revoked = await tb.addUser('matrix-revoked@example.com');
    await tb.api('DELETE', `/api/v1/keys/${revoked.keyId}`, tb.adminKey);
    await tb.addUser('matrix-expired@example.com');
    const expiring = await tb.api<{ key: string }>(
      'POST',
      '/api/v1/users/matrix-expired@example.com/keys',
      tb.adminKey,
      {
        expiresAt: new Date(clock.now() + 60_000).toISOString(),
      },
    );
    const provisioner = await tb.api<{ secret: string }>('POST', '/api/v1/provisioners', tb.adminKey, {
      name: 'matrix template',
    });
    Object.assign(keys, {
      provisioner: provisioner.body.secret,
      none: undefined,
      malformed: 'not a key at all',
      unknown: `aib_${'Q'.repeat(43)}`,
      revoked: revoked.key,
      expired: expiring.body.key,
      member: member.key,
      admin: tb.adminKey,
      'member-session': undefined,
      'admin-session': undefined,
    });
    for (const [who, key] of [
      ['member-session', member.key],
      ['admin-session', tb.adminKey],
    ] as const) {
      cookies[who] = await sessionCookie(tb.url, key);
    }
    // The sessions (hours long) outlive this; the 'expired' key does not.
    clock.advance(60_000);
  });
  after(async () => {
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  // `*`: a pass-through path, so valid keys reach the upstream (the model list is the bridge's own).
  function concrete(r: RouteEntry): string {
    return r.url
      .replace(':email', encodeURIComponent(memberEmail))
      .replace(':id', r.url === '/api/v1/keys/:id' ? spareKeyId : 'id_that_does_not_exist')
      .replace(':team', 'matrix')
      .replace(':model', 'model-x')
      .replace(/\*$/, r.url.startsWith('/anthropic') ? 'v1/messages/count_tokens' : 'v1/models');
  }

  it('every route has an access rule, and every caller gets the answer the rule gives', async () => {
    const routes = tb.bridge.routes.routes.filter(
      (r) => !r.websocket && r.method !== 'HEAD' && r.method !== 'OPTIONS',
    );
    assert.ok(routes.length >= 25, `only ${routes.length} routes in the table`);
    assert.ok(
      routes.some((r) => r.url.startsWith('/scim/v2/')),
      'the SCIM routes (own token, or an admin key) are walked too',
    );
    const missing = routes.filter((r) => r.access === undefined).map((r) => `${r.method} ${r.url}`);
    assert.deepEqual(missing, [], 'routes without an access rule');

    const upstreamBefore = anthropic.requests.length + openai.requests.length;
    const failures: string[] = [];
    let tried = 0;
    for (const r of routes) {
      const provider = r.url.startsWith('/anthropic') || r.url.startsWith('/openai');
      if (provider && !['GET', 'POST'].includes(r.method)) continue;
      for (const who of Object.keys(keys) as Who[]) {
        const key = keys[who];
        const cookie = cookies[who];
        // Sessions are for /api routes (provider routes and /metrics take keys only); signing a
        // matrix session out would end it for the routes after this one.
        const signOut = r.method === 'DELETE' && r.url === '/api/v1/session';
        if (cookie !== undefined && (!r.url.startsWith('/api/') || signOut)) continue;
        const headers: Record<string, string> = { 'anthropic-version': '2023-06-01' };
        if (key !== undefined) headers.authorization = `Bearer ${key}`;
        if (cookie !== undefined) Object.assign(headers, { cookie, 'x-aibridge-csrf': '1' });
        const hasBody = ['POST', 'PUT', 'PATCH'].includes(r.method);
        if (hasBody) headers['content-type'] = 'application/json';
        const res = await fetch(tb.url + concrete(r), {
          method: r.method,
          headers,
          ...(hasBody ? { body: '{}' } : {}),
        });
        await res.arrayBuffer();
        tried++;
        const s = res.status;
        let ok: boolean;
        if (r.access === 'public') ok = s !== 401 && s !== 403 && s < 500;
        else if (who === 'provisioner')
          ok =
            r.method === 'POST' && r.url === '/api/v1/users/:email/keys'
              ? s !== 401 && s !== 403 && s < 500
              : s === 401 || s === 403;
        else if (BAD.includes(who)) ok = s === 401;
        else if (r.access === 'admin' && (who === 'member' || who === 'member-session')) ok = s === 403;
        // Authenticated, then refused on its merits: none of the matrix's keys came from a device sign-in.
        else if (r.url === '/api/v1/auth/device/renew') ok = s === 403;
        else ok = s !== 401 && s !== 403 && s < 500;
        if (!ok) failures.push(`${r.method} ${r.url} as ${who}: ${s}`);
      }
    }
    assert.deepEqual(failures, []);
    assert.ok(tried > 150);
    // Only valid keys ever reached a provider.
    const reached = anthropic.requests.length + openai.requests.length - upstreamBefore;
    assert.ok(reached > 0 && reached <= 2 * 2 * 4, `${reached} upstream requests`);
    for (const req of [...anthropic.requests, ...openai.requests]) {
      assert.ok(!String(req.headers.authorization ?? '').includes('aib_'), 'a bridge key went upstream');
      assert.ok(!String(req.headers['x-api-key'] ?? '').includes('aib_'), 'a bridge key went upstream');
    }
  });

  it('every route behind a key refuses a bad caller before reading the body (no body is buffered for a 401)', async () => {
    const routes = tb.bridge.routes.routes.filter(
      (r) =>
        !r.websocket &&
        r.access !== 'public' &&
        r.url !== '/metrics' &&
        ['POST', 'PUT', 'PATCH'].includes(r.method),
    );
    assert.ok(
      routes.some((r) => r.url.startsWith('/anthropic')) && routes.some((r) => r.url.startsWith('/openai')),
    );
    const { port } = new URL(tb.url);
    const failures: string[] = [];
    for (const r of routes) {
      for (const who of BAD) {
        const key = keys[who];
        // Headers announce 16 MiB that never come: only an answer from the headers alone arrives.
        const head =
          `${r.method} ${concrete(r)} HTTP/1.1\r\nHost: bridge\r\nanthropic-version: 2023-06-01\r\n` +
          `${key !== undefined ? `authorization: Bearer ${key}\r\n` : ''}` +
          'content-type: application/json\r\ncontent-length: 16777216\r\n\r\n';
        const status = await new Promise<string>((resolve) => {
          const socket = connect(Number(port), '127.0.0.1', () => socket.write(head));
          let text = '';
          const timer = setTimeout(() => {
            socket.destroy();
            resolve('no answer within 2s');
          }, 2000);
          socket.on('data', (c: Buffer) => {
            text += c.toString('latin1');
            if (text.includes('\r\n\r\n')) {
              clearTimeout(timer);
              socket.destroy();
              resolve(text.slice(9, 12));
            }
          });
          socket.on('error', () => undefined);
        });
        if (status !== '401') failures.push(`${r.method} ${r.url} as ${who}: ${status}`);
      }
    }
    assert.deepEqual(failures, []);
  });

  it('slows an address that keeps presenting bad keys, and still serves a valid key from it', async () => {
    const tight = await startBridge(anthropic.url, { AIBRIDGE_AUTH_FAILURES_PER_MINUTE: '5' });
    try {
      const dev = await tight.addUser('throttled@example.com');
      const statuses: number[] = [];
      let retryAfter: string | null = null;
      for (let i = 0; i < 8; i++) {
        const res = await fetch(`${tight.url}/api/v1/me`, {
          headers: { authorization: `Bearer aib_${'Z'.repeat(43)}` },
        });
        statuses.push(res.status);
        retryAfter ??= res.headers.get('retry-after');
        await res.arrayBuffer();
      }
      assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
      assert.ok(Number(retryAfter) >= 1);
      // Only failures are throttled (issue 22): a valid key from the same address is served, so a
      // colleague behind the same NAT or proxy is never locked out by someone guessing.
      const served = await fetch(`${tight.url}/api/v1/me`, {
        headers: { authorization: `Bearer ${dev.key}` },
      });
      assert.equal(served.status, 200);
      const metrics = await tight.bridge.metrics.registry.getSingleMetricAsString(
        'aibridge_auth_failures_total',
      );
      // Throttled attempts are still bad keys, and counted as such.
      assert.match(metrics, /aibridge_auth_failures_total 8$/m);
    } finally {
      await tight.close();
    }
  });
});
