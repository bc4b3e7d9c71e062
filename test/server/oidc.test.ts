import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { loadConfig } from '../../server/config';
import { MEMBER_WRITES_PER_MINUTE } from '../../server/identity/member-writes';
import type { Me } from '../../shared/identity';
import type { AuthConfig } from '../../shared/sso';
import { TestClock } from '../helpers/clock';
import {
  CLIENT_ID,
  CookieJar,
  CraftingProvider,
  freePort,
  OpenIdProvider,
  type SsoBridge,
  startSsoBridge,
  startSsoSetUp,
  throughProvider,
  visit,
} from '../helpers/oidc';
import { keySignIn } from '../helpers/session';

const LOGIN = '/api/v1/auth/oidc/login';
const CALLBACK = '/api/v1/auth/oidc/callback';

interface Attempt {
  res: Response;
  body: string;
  jar: CookieJar;
  callbackUrl: string;
}

/** The whole browser round trip: the bridge's login route, the provider's pages, the bridge's callback. */
async function signIn(tb: SsoBridge, login: string, returnTo?: string): Promise<Attempt> {
  const jar = new CookieJar();
  const q = returnTo === undefined ? '' : `?returnTo=${encodeURIComponent(returnTo)}`;
  const start = await visit(jar, `${tb.url}${LOGIN}${q}`);
  assert.equal(start.status, 302, await start.text());
  const callbackUrl = await throughProvider(
    jar,
    start.headers.get('location') ?? '',
    login,
    `${tb.url}${CALLBACK}`,
  );
  const res = await visit(jar, callbackUrl);
  return { res, body: await res.text(), jar, callbackUrl };
}

function codeOf(a: { body: string }): string | undefined {
  return /data-error-code="(\w+)"/.exec(a.body)?.[1];
}

async function me(tb: SsoBridge, jar: CookieJar): Promise<{ status: number; body: Me }> {
  const res = await visit(jar, `${tb.url}/api/v1/me`);
  return { status: res.status, body: (await res.json()) as Me };
}

/** Nothing a token holds reaches the log: no JWT, no authorization code. */
function assertNoTokensLogged(tb: SsoBridge, code?: string): void {
  const all = tb.logs.join('');
  assert.doesNotMatch(all, /eyJ[\w-]{10,}\.eyJ/, 'a JWT was logged');
  if (code) assert.ok(!all.includes(code), 'the authorization code was logged');
}

describe('OIDC sign-in against a real OpenID Provider (oidc-provider)', function () {
  this.timeout(60_000);
  let idp: OpenIdProvider;
  let tb: SsoBridge;
  const clock = new TestClock();

  before(async () => {
    // Mocha builds every describe when it loads the files, minutes before this one runs in the
    // whole suite: start the clock at the real time of this file's run (the IdP stamps real time).
    clock.advance(Math.max(0, Date.now() - clock.now()));
    ({ idp, tb } = await startSsoSetUp(
      {
        alice: {
          email: 'Alice@Example.com',
          email_verified: true,
          name: 'Alice Doe',
          groups: ['eng-platform', 'aibridge-admins'],
        },
        bob: { email: 'bob@example.com', email_verified: true, name: 'Bob', groups: ['eng-web'] },
        dave: { email: 'dave@example.com', email_verified: true, groups: ['eng-web'] },
        eve: { email: 'eve@example.com', email_verified: false, groups: ['eng-web'] },
        mallory: { email: 'mallory@elsewhere.org', email_verified: true, groups: ['eng-web'] },
        carol: { email: 'carol@example.com', email_verified: true, groups: ['contractors'] },
      },
      {
        AIBRIDGE_OIDC_SCOPES: 'openid email profile groups',
        AIBRIDGE_OIDC_DISPLAY_NAME: 'Test IdP',
        AIBRIDGE_OIDC_ALLOWED_DOMAINS: 'example.com',
        AIBRIDGE_OIDC_ALLOWED_GROUPS: 'eng-platform,eng-web',
        AIBRIDGE_GROUP_TEAMS: JSON.stringify({ 'eng-platform': 'platform', 'eng-web': 'web' }),
        AIBRIDGE_OIDC_ADMIN_GROUP: 'aibridge-admins',
        AIBRIDGE_TRUSTED_PROXIES: '127.0.0.1',
      },
      { build: { clock } },
    ));
  });
  after(async () => {
    await tb?.close();
    await idp?.stop();
  });

  it('tells the admin page that SSO is on, with the display name, and that the key form is on', async () => {
    const res = await fetch(`${tb.url}/api/v1/auth/config`);
    assert.equal(res.status, 200);
    assert.deepEqual((await res.json()) as AuthConfig, {
      sso: { displayName: 'Test IdP', loginUrl: LOGIN },
      keySignIn: true,
    });
  });

  it('discovers the provider and sends the browser there with PKCE (S256), state and nonce, kept server-side', async () => {
    const jar = new CookieJar();
    const res = await visit(jar, `${tb.url}${LOGIN}`);
    assert.equal(res.status, 302);
    const to = new URL(res.headers.get('location') ?? '');
    assert.equal(`${to.origin}${to.pathname}`, `${idp.url}/auth`);
    const q = to.searchParams;
    assert.equal(q.get('client_id'), CLIENT_ID);
    assert.equal(q.get('response_type'), 'code');
    assert.equal(q.get('redirect_uri'), `${tb.url}${CALLBACK}`);
    assert.equal(q.get('scope'), 'openid email profile groups');
    assert.equal(q.get('code_challenge_method'), 'S256');
    assert.ok((q.get('state') ?? '').length >= 32 && (q.get('nonce') ?? '').length >= 32);
    // The verifier never leaves the bridge: the store holds it, the URL only its S256 challenge.
    const flows = await tb.bridge.store.listDocs<{ id: string; codeVerifier: string; nonce: string }>(
      'oidc_flow',
    );
    const flow = flows.find(
      (f) =>
        f.id ===
        createHash('sha256')
          .update(q.get('state') ?? '')
          .digest('hex'),
    );
    assert.ok(flow, 'the flow is stored under the state’s hash');
    assert.equal(createHash('sha256').update(flow.codeVerifier).digest('base64url'), q.get('code_challenge'));
    assert.equal(flow.nonce, q.get('nonce'));
    assert.ok(!to.href.includes(flow.codeVerifier));
    const cookie = res.headers.getSetCookie().find((c) => c.startsWith('aibridge_oidc='));
    assert.match(cookie ?? '', /HttpOnly/);
    assert.match(cookie ?? '', /SameSite=Lax/);
  });

  it('signs a new user in: created with the team from the groups claim and the admin role from the admin group', async () => {
    const a = await signIn(tb, 'alice');
    assert.equal(a.res.status, 302, a.body);
    assert.equal(a.res.headers.get('location'), '/admin');
    const cookie = a.res.headers.getSetCookie().find((c) => c.startsWith('aibridge_session='));
    assert.match(cookie ?? '', /HttpOnly; SameSite=Strict/);
    const who = await me(tb, a.jar);
    assert.equal(who.status, 200);
    assert.equal(who.body.user.email, 'alice@example.com');
    assert.equal(who.body.user.name, 'Alice Doe');
    assert.equal(who.body.user.team, 'platform');
    assert.equal(who.body.user.role, 'admin');
    // The session's key is the page's own, expiring with the session.
    assert.equal(who.body.key.name, 'admin page sign-in (SSO)');
    assert.ok(who.body.key.expiresAt !== null);
    assertNoTokensLogged(tb, new URL(a.callbackUrl).searchParams.get('code') ?? undefined);
  });

  it('updates team, role and name from the claims on a later sign-in', async () => {
    idp.users.set('alice', {
      email: 'alice@example.com',
      email_verified: true,
      name: 'Alice D.',
      groups: ['eng-web'],
    });
    const before = (await tb.bridge.store.listUsers()).length;
    const a = await signIn(tb, 'alice');
    assert.equal(a.res.status, 302, a.body);
    const who = await me(tb, a.jar);
    assert.equal(who.body.user.team, 'web');
    assert.equal(who.body.user.role, 'member');
    assert.equal(who.body.user.name, 'Alice D.');
    assert.equal((await tb.bridge.store.listUsers()).length, before, 'no second user');
  });

  it('keeps signing in after the provider rotates its signing key (the JWKS is refetched for the unknown kid)', async () => {
    const first = await signIn(tb, 'bob');
    assert.equal(first.res.status, 302, first.body);
    const fetches = idp.hits.filter((p) => p === '/jwks').length;
    idp.rotateKeys();
    // openid-client refetches a JWKS for an unknown kid once the cached one is a minute old
    // (its guard against a provider being hammered): move the process's time on, and the bridge's.
    const realNow = Date.now;
    Date.now = () => realNow() + 61_000;
    clock.advance(61_000);
    try {
      const second = await signIn(tb, 'bob');
      assert.equal(second.res.status, 302, second.body);
      assert.equal((await me(tb, second.jar)).body.user.email, 'bob@example.com');
    } finally {
      Date.now = realNow;
    }
    assert.equal(idp.hits.filter((p) => p === '/jwks').length, fetches + 1, 'the keys were fetched again');
    assert.equal(idp.kids.length, 2);
    // Discovered once, on the first sign-in, for every sign-in since.
    assert.equal(idp.hits.filter((p) => p === '/.well-known/openid-configuration').length, 1);
  });

  it('refuses a replayed callback: each state is used once', async () => {
    const a = await signIn(tb, 'bob');
    assert.equal(a.res.status, 302, a.body);
    const users = (await tb.bridge.store.listUsers()).length;
    const again = await visit(a.jar, a.callbackUrl);
    const body = await again.text();
    assert.equal(again.status, 400);
    assert.equal(codeOf({ body }), 'oidc_state_invalid');
    assert.match(again.headers.get('content-type') ?? '', /text\/html/);
    assert.equal((await tb.bridge.store.listUsers()).length, users);
  });

  it('refuses a callback with no state, or a state this bridge never issued', async () => {
    for (const q of ['?code=abc', '?code=abc&state=made-up-state', '']) {
      const res = await fetch(`${tb.url}${CALLBACK}${q}`, { redirect: 'manual' });
      const body = await res.text();
      assert.equal(res.status, 400, q);
      assert.equal(codeOf({ body }), 'oidc_state_invalid', q);
    }
  });

  it('refuses a callback arriving in another browser than the one that started the sign-in (login CSRF)', async () => {
    const jar = new CookieJar();
    const start = await visit(jar, `${tb.url}${LOGIN}`);
    const cb = await throughProvider(
      jar,
      start.headers.get('location') ?? '',
      'dave',
      `${tb.url}${CALLBACK}`,
    );
    const res = await visit(new CookieJar(), cb);
    assert.equal(res.status, 400);
    assert.equal(codeOf({ body: await res.text() }), 'oidc_state_invalid');
    assert.equal(await tb.bridge.store.getUserByEmail('dave@example.com'), undefined);
  });

  it('refuses a sign-in that took more than 10 minutes', async () => {
    const jar = new CookieJar();
    const start = await visit(jar, `${tb.url}${LOGIN}`);
    const cb = await throughProvider(
      jar,
      start.headers.get('location') ?? '',
      'dave',
      `${tb.url}${CALLBACK}`,
    );
    clock.advance(10 * 60_000 + 1000);
    const res = await visit(jar, cb);
    assert.equal(res.status, 400);
    assert.equal(codeOf({ body: await res.text() }), 'oidc_state_invalid');
    assert.equal(await tb.bridge.store.getUserByEmail('dave@example.com'), undefined);
  });

  it('is refused by the provider when the PKCE verifier does not match the challenge', async () => {
    const jar = new CookieJar();
    const start = await visit(jar, `${tb.url}${LOGIN}`);
    const state = new URL(start.headers.get('location') ?? '').searchParams.get('state') ?? '';
    const id = createHash('sha256').update(state).digest('hex');
    const store = tb.bridge.store;
    const flow = await store.getDoc<Record<string, unknown>>('oidc_flow', id);
    assert.ok(flow);
    await store.putDoc('oidc_flow', id, { ...flow, codeVerifier: 'x'.repeat(43) });
    const cb = await throughProvider(
      jar,
      start.headers.get('location') ?? '',
      'dave',
      `${tb.url}${CALLBACK}`,
    );
    const res = await visit(jar, cb);
    assert.equal(res.status, 401);
    assert.equal(codeOf({ body: await res.text() }), 'oidc_token_invalid');
    assert.equal(await store.getUserByEmail('dave@example.com'), undefined);
  });

  for (const [login, email, status, code] of [
    ['eve', 'eve@example.com', 403, 'oidc_email_unverified'],
    ['mallory', 'mallory@elsewhere.org', 403, 'oidc_not_allowed'],
    ['carol', 'carol@example.com', 403, 'oidc_not_allowed'],
  ] as const) {
    it(`refuses ${email} with ${code}, creating nothing`, async () => {
      const a = await signIn(tb, login);
      assert.equal(a.res.status, status, a.body);
      assert.equal(codeOf(a), code);
      assert.equal(a.res.headers.getSetCookie().filter((c) => c.startsWith('aibridge_session=')).length, 0);
      assert.equal(await tb.bridge.store.getUserByEmail(email), undefined);
      assertNoTokensLogged(tb);
    });
  }

  it('returns to a same-origin path after sign-in, and refuses any other returnTo', async () => {
    const a = await signIn(tb, 'bob', '/admin#/audit');
    assert.equal(a.res.status, 302, a.body);
    assert.equal(a.res.headers.get('location'), '/admin#/audit');
    for (const bad of [
      'https://evil.example/',
      '//evil.example/x',
      '/\\evil.example',
      'admin',
      // Dot segments that resolve to a protocol-relative URL.
      '/.//evil.example/phish',
      '/%2e//evil.example/phish',
      '/a/..//evil.example/phish',
    ]) {
      const res = await fetch(`${tb.url}${LOGIN}?returnTo=${encodeURIComponent(bad)}`, {
        redirect: 'manual',
      });
      assert.equal(res.status, 400, bad);
      assert.equal(codeOf({ body: await res.text() }), 'invalid_request', bad);
    }
  });

  it('one address starts at most 60 sign-ins a minute (then 429 rate_limited, storing nothing, for at most a minute) and keeps at most 100 waiting; others still sign in', async () => {
    const flows = async () => (await tb.bridge.store.listDocs('oidc_flow')).length;
    const before = await flows();
    // One IPv6 /64 through several of its addresses: a host has the whole /64 to rotate through.
    const start = (n: number) =>
      visit(new CookieJar(), `${tb.url}${LOGIN}`, { headers: { 'x-forwarded-for': `2001:db8:5:5::${n}` } });
    for (let i = 0; i < 60; i++) assert.equal((await start(i % 7)).status, 302);
    assert.equal(await flows(), before + 60);
    const refused = await start(8);
    assert.equal(refused.status, 429);
    const retry = Number(refused.headers.get('retry-after'));
    assert.ok(retry > 0 && retry <= 60, `retry-after ${retry}`);
    assert.equal(codeOf({ body: await refused.text() }), 'rate_limited');
    assert.equal(await flows(), before + 60, 'nothing stored for the refused start');
    const other = await signIn(tb, 'bob');
    assert.equal(other.res.status, 302, other.body);
    // A minute on, the address is served again; past 100 waiting its own oldest makes room.
    clock.advance(61_000);
    for (let i = 0; i < 41; i++) assert.equal((await start(i % 7)).status, 302);
    assert.equal(await flows(), before + 100, 'the 101st replaced the address’s own oldest');
  });

  it('an SSO sign-in counts against the member’s pace of changes: past it, 429 rate_limited before the user, a key or a session is written', async () => {
    idp.users.set('frank', {
      email: 'frank@example.com',
      email_verified: true,
      name: 'Frank',
      groups: ['eng-web'],
    });
    const first = await signIn(tb, 'frank');
    assert.equal(first.res.status, 302, first.body);
    const frank = await tb.bridge.store.getUserByEmail('frank@example.com');
    assert.ok(frank);
    const key = await tb.bridge.identity.issueKey(frank, { name: 'script' });
    for (let i = 1; i < MEMBER_WRITES_PER_MINUTE; i++) {
      const res = await keySignIn(tb.url, key.key);
      assert.equal(res.status, 201, `key sign-in ${i}`);
    }
    const keys = (await tb.bridge.store.listKeys(frank.id)).length;
    idp.users.set('frank', {
      email: 'frank@example.com',
      email_verified: true,
      name: 'Frank Renamed',
      groups: ['eng-web'],
    });
    const paced = await signIn(tb, 'frank');
    assert.equal(paced.res.status, 429, paced.body);
    assert.equal(codeOf(paced), 'rate_limited');
    assert.equal(
      (await tb.bridge.store.listKeys(frank.id)).length,
      keys,
      'no key issued for the refused sign-in',
    );
    assert.equal(
      (await tb.bridge.store.getUserByEmail('frank@example.com'))?.name,
      'Frank',
      'the user not rewritten',
    );
    clock.advance(61_000);
    const later = await signIn(tb, 'frank');
    assert.equal(later.res.status, 302, later.body);
  });
});

describe('OIDC sign-in refuses ID tokens that fail validation (a provider crafting them)', function () {
  this.timeout(60_000);
  let idp: CraftingProvider;
  let tb: SsoBridge;
  let n = 0;

  before(async () => {
    idp = await new CraftingProvider({
      email: 'crafted@example.com',
      email_verified: true,
      name: 'Crafted',
      groups: ['eng'],
    }).start();
    // A public client: no secret, PKCE alone.
    tb = await startSsoBridge(await freePort(), {
      AIBRIDGE_OIDC_ISSUER: idp.url,
      AIBRIDGE_OIDC_CLIENT_ID: CLIENT_ID,
    });
  });
  after(async () => {
    await tb?.close();
    await idp?.stop();
  });

  /** Each attempt with its own email, to see whether it was created. */
  async function attempt(tamper: (c: Record<string, unknown>) => Record<string, unknown>, forge = false) {
    const email = `crafted-${++n}@example.com`;
    idp.tamper = (c) => tamper({ ...c, email });
    idp.forge = forge;
    const a = await signIn(tb, 'unused');
    return { ...a, created: (await tb.bridge.store.getUserByEmail(email)) !== undefined };
  }

  it('accepts the provider’s well-formed token (so each refusal below is the tampering’s doing)', async () => {
    const a = await attempt((c) => c);
    assert.equal(a.res.status, 302, a.body);
    assert.ok(a.created);
    assert.equal((await me(tb, a.jar)).body.user.team, 'eng');
  });

  it('shows oidc_denied when the provider answers the sign-in with an error (the user cancelled)', async () => {
    idp.deny = true;
    try {
      const a = await attempt((c) => c);
      assert.equal(a.res.status, 403, a.body);
      assert.equal(codeOf(a), 'oidc_denied');
      assert.match(a.body, /access_denied/);
      assert.equal(a.created, false);
    } finally {
      idp.deny = false;
    }
  });

  it('refuses an email that lower-cases into another account’s (the Kelvin sign), leaving that account alone', async () => {
    const kate = await tb.bridge.identity.createUser({
      email: 'kate@example.com',
      name: 'Kate',
      role: 'admin',
    });
    // `\u212Aate@example.com` lower-cases to `kate@example.com`: matched by email, it signed in as Kate.
    idp.tamper = (c) => ({ ...c, email: '\u212Aate@example.com', name: 'Mallory' });
    idp.forge = false;
    const a = await signIn(tb, 'unused');
    assert.equal(a.res.status, 401, a.body);
    assert.equal(codeOf(a), 'oidc_token_invalid');
    assert.equal(a.res.headers.getSetCookie().filter((c) => c.startsWith('aibridge_session=')).length, 0);
    assert.deepEqual(await tb.bridge.store.getUserByEmail('kate@example.com'), kate);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const cases: [string, (c: Record<string, unknown>) => Record<string, unknown>, boolean][] = [
    ['a wrong audience', (c) => ({ ...c, aud: 'another-client' }), false],
    ['an expired ID token', (c) => ({ ...c, iat: now() - 7200, exp: now() - 3600 }), false],
    ['a future-dated ID token', (c) => ({ ...c, iat: now() + 3600, exp: now() + 7200 }), false],
    ['a bad signature', (c) => c, true],
    ['a mismatched nonce', (c) => ({ ...c, nonce: 'not-the-nonce-the-bridge-sent' }), false],
    ['another issuer', (c) => ({ ...c, iss: 'https://idp.evil.example' }), false],
    ['no email claim', ({ email: _e, ...c }) => c, false],
  ];
  for (const [what, tamper, forge] of cases) {
    it(`refuses ${what} with oidc_token_invalid, creating nothing and logging no token`, async () => {
      const a = await attempt(tamper, forge);
      assert.equal(a.res.status, 401, a.body);
      assert.equal(codeOf(a), 'oidc_token_invalid');
      assert.equal(a.created, false);
      assert.equal(a.res.headers.getSetCookie().filter((c) => c.startsWith('aibridge_session=')).length, 0);
      assertNoTokensLogged(tb);
    });
  }
});

describe('OIDC sign-in next to SCIM groups (Entra ID: group object ids in the token, names over SCIM)', function () {
  this.timeout(60_000);
  const SCIM_TOKEN = 'scim-token-for-the-oidc-test-0123456789abcdef';
  const ADMINS_OBJECT_ID = '6f1c3d0e-8c52-4a7e-9a43-1f0b2c9d4e55';
  let idp: OpenIdProvider;
  let tb: SsoBridge;
  const clock = new TestClock();

  const scim = async (method: string, route: string, body: unknown) => {
    const res = await fetch(`${tb.url}/scim/v2${route}`, {
      method,
      headers: { authorization: `Bearer ${SCIM_TOKEN}`, 'content-type': 'application/scim+json' },
      body: JSON.stringify(body),
    });
    assert.ok(res.ok, `${method} ${route}: ${res.status} ${await res.text()}`);
  };

  before(async () => {
    clock.advance(Math.max(0, Date.now() - clock.now()));
    ({ idp, tb } = await startSsoSetUp(
      { erin: { email: 'erin@example.com', email_verified: true, groups: [ADMINS_OBJECT_ID] } },
      {
        AIBRIDGE_OIDC_SCOPES: 'openid email profile groups',
        AIBRIDGE_SCIM_TOKEN: SCIM_TOKEN,
        AIBRIDGE_GROUP_TEAMS: JSON.stringify({ 'Eng Platform': 'platform' }),
        AIBRIDGE_OIDC_ADMIN_GROUP: 'Bridge Admins',
      },
      { build: { clock } },
    ));
  });
  after(async () => {
    await tb?.close();
    await idp?.stop();
  });

  it('keeps the team and role SCIM groups give: a sign-in whose groups claim names them otherwise changes neither', async () => {
    const res = await fetch(`${tb.url}/scim/v2/Users`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SCIM_TOKEN}`, 'content-type': 'application/scim+json' },
      body: JSON.stringify({ userName: 'erin@example.com', active: true }),
    });
    const { id } = (await res.json()) as { id: string };
    await scim('POST', '/Groups', { displayName: 'Bridge Admins', members: [{ value: id }] });
    await scim('POST', '/Groups', { displayName: 'Eng Platform', members: [{ value: id }] });
    const a = await signIn(tb, 'erin');
    assert.equal(a.res.status, 302, a.body);
    const who = await me(tb, a.jar);
    assert.equal(who.body.user.role, 'admin', 'the sign-in demoted an admin of the SCIM admin group');
    assert.equal(who.body.user.team, 'platform', 'the sign-in took away the team SCIM gave');
  });
});

describe('OIDC with an issuer identifier that ends in a slash (Entra ID v1: https://sts.windows.net/<tenant>/)', function () {
  this.timeout(60_000);
  let idp: OpenIdProvider;
  const bridges: SsoBridge[] = [];
  const clock = new TestClock();

  before(async () => {
    clock.advance(Math.max(0, Date.now() - clock.now()));
  });
  afterEach(async () => {
    for (const b of bridges.splice(0)) await b.close();
    await idp?.stop();
  });

  for (const [what, issuer] of [
    ['the issuer as the provider spells it, with its slash', (i: string) => i],
    ['the issuer entered without the slash', (i: string) => i.replace(/\/$/, '')],
  ] as const)
    it(`signs a user in with ${what}`, async () => {
      let tb: SsoBridge;
      ({ idp, tb } = await startSsoSetUp(
        { vera: { email: 'vera@example.com', email_verified: true, name: 'Vera' } },
        {},
        { build: { clock }, issuerPath: '/tenant-1234/', issuer },
      ));
      bridges.push(tb);
      assert.ok(idp.url.endsWith('/tenant-1234/'));
      const a = await signIn(tb, 'vera');
      assert.equal(a.res.status, 302, a.body);
      assert.equal((await me(tb, a.jar)).body.user.email, 'vera@example.com');
    });
});

describe('OIDC with the provider unreachable at start', function () {
  this.timeout(60_000);
  let tb: SsoBridge;
  let idp: OpenIdProvider | undefined;
  let idpPort = 0;
  const clock = new TestClock();

  before(async () => {
    // Mocha builds every describe when it loads the files, minutes before this one runs in the
    // whole suite: start the clock at the real time of this file's run (the IdP stamps real time).
    clock.advance(Math.max(0, Date.now() - clock.now()));
    idpPort = await freePort();
    const port = await freePort();
    tb = await startSsoBridge(
      port,
      { AIBRIDGE_OIDC_ISSUER: `http://127.0.0.1:${idpPort}`, AIBRIDGE_OIDC_CLIENT_ID: CLIENT_ID },
      { clock },
    );
  });
  after(async () => {
    await tb?.close();
    await idp?.stop();
  });

  it('starts anyway, answers the login route 503 oidc_unavailable, and the key form still works', async () => {
    const res = await fetch(`${tb.url}${LOGIN}`, { redirect: 'manual' });
    assert.equal(res.status, 503);
    assert.equal(codeOf({ body: await res.text() }), 'oidc_unavailable');
    assert.equal(
      (await tb.bridge.store.listDocs('oidc_flow')).length,
      0,
      'nothing stored for a flow that never left',
    );
    const key = await keySignIn(tb.url, tb.adminKey);
    assert.equal(key.status, 201);
  });

  it('discovers the provider once it is up, on a later sign-in', async () => {
    idp = await new OpenIdProvider(`${tb.url}${CALLBACK}`).start(idpPort);
    clock.advance(6_000);
    const res = await fetch(`${tb.url}${LOGIN}`, { redirect: 'manual' });
    assert.equal(res.status, 302, await res.text());
    assert.ok(res.headers.get('location')?.startsWith(`${idp.url}/auth?`));
  });
});

describe('SSO off, and the key form switched off', function () {
  this.timeout(60_000);
  let plain: SsoBridge;
  let ssoOnly: SsoBridge;
  let idp: CraftingProvider;

  before(async () => {
    idp = await new CraftingProvider({ email: 'x@example.com', email_verified: true }).start();
    plain = await startSsoBridge(await freePort(), {});
    ssoOnly = await startSsoBridge(await freePort(), {
      AIBRIDGE_OIDC_ISSUER: idp.url,
      AIBRIDGE_OIDC_CLIENT_ID: CLIENT_ID,
      AIBRIDGE_ADMIN_KEY_SIGNIN: 'false',
    });
  });
  after(async () => {
    await plain?.close();
    await ssoOnly?.close();
    await idp?.stop();
  });

  it('without AIBRIDGE_OIDC_ISSUER: no SSO button, and the SSO routes answer oidc_not_configured', async () => {
    const cfg = await fetch(`${plain.url}/api/v1/auth/config`);
    assert.deepEqual(await cfg.json(), { sso: null, keySignIn: true });
    for (const path of [LOGIN, CALLBACK]) {
      const res = await fetch(`${plain.url}${path}`, { redirect: 'manual' });
      assert.equal(res.status, 404, path);
      assert.equal(codeOf({ body: await res.text() }), 'oidc_not_configured');
    }
  });

  it('AIBRIDGE_ADMIN_KEY_SIGNIN=false: the page hides the key form and POST /api/v1/session refuses keys; keys still call the API', async () => {
    const cfg = (await (await fetch(`${ssoOnly.url}/api/v1/auth/config`)).json()) as AuthConfig;
    assert.equal(cfg.keySignIn, false);
    const res = await keySignIn(ssoOnly.url, ssoOnly.adminKey);
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'key_signin_disabled');
    const meRes = await fetch(`${ssoOnly.url}/api/v1/me`, {
      headers: { authorization: `Bearer ${ssoOnly.adminKey}` },
    });
    assert.equal(meRes.status, 200);
  });
});

describe('OIDC settings are checked at start', () => {
  const base = {
    AIBRIDGE_OIDC_ISSUER: 'https://idp.example.com',
    AIBRIDGE_OIDC_CLIENT_ID: 'bridge',
    AIBRIDGE_PUBLIC_URL: 'https://bridge.example.com',
  };
  const load = (env: Record<string, string>) => loadConfig({ 'data-dir': '/tmp/aibridge-oidc-config' }, env);

  it('parses the defaults: scopes, claims, verified email, display name from the issuer host, redirect URI', () => {
    const c = load(base);
    assert.deepEqual(c.oidc, {
      issuer: 'https://idp.example.com',
      clientId: 'bridge',
      clientSecret: undefined,
      scopes: ['openid', 'email', 'profile'],
      redirectUri: 'https://bridge.example.com/api/v1/auth/oidc/callback',
      emailClaim: 'email',
      requireVerifiedEmail: true,
      nameClaim: 'name',
      groupsClaim: 'groups',
      allowedDomains: [],
      allowedGroups: [],
      displayName: 'idp.example.com',
    });
    assert.equal(c.adminKeySignIn, true);
    assert.equal(load({}).oidc, undefined);
  });

  for (const [env, setting] of [
    [{ ...base, AIBRIDGE_OIDC_CLIENT_ID: '' }, 'AIBRIDGE_OIDC_CLIENT_ID'],
    [{ ...base, AIBRIDGE_PUBLIC_URL: '' }, 'AIBRIDGE_PUBLIC_URL'],
    [{ ...base, AIBRIDGE_OIDC_ISSUER: 'http://idp.example.com' }, 'AIBRIDGE_OIDC_ISSUER'],
    [{ ...base, AIBRIDGE_OIDC_SCOPES: 'email profile' }, 'AIBRIDGE_OIDC_SCOPES'],
    [
      { ...base, AIBRIDGE_OIDC_ALLOWED_DOMAINS: 'example.com, not a domain' },
      'AIBRIDGE_OIDC_ALLOWED_DOMAINS',
    ],
    [{ ...base, AIBRIDGE_OIDC_REQUIRE_VERIFIED_EMAIL: 'maybe' }, 'AIBRIDGE_OIDC_REQUIRE_VERIFIED_EMAIL'],
    [{ ...base, AIBRIDGE_OIDC_GROUPS_CLAIM: 'has space' }, 'AIBRIDGE_OIDC_GROUPS_CLAIM'],
    [{ AIBRIDGE_OIDC_CLIENT_ID: 'bridge' }, 'AIBRIDGE_OIDC_ISSUER'],
    [{ AIBRIDGE_ADMIN_KEY_SIGNIN: 'false' }, 'AIBRIDGE_ADMIN_KEY_SIGNIN'],
  ] as const) {
    it(`refuses to start, naming ${setting}`, () => {
      assert.throws(
        () => load(env),
        (err: Error) => err.message.includes(setting),
      );
    });
  }
});
