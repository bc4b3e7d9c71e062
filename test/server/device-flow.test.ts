import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { loadConfig } from '../../server/config';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { sessionCookie } from '../helpers/session';
import { tempDirSync } from '../helpers/temp-dirs';

const GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

interface Started {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
  expires_in: number;
  interval: number;
}

/**
 * The device authorization grant (RFC 8628) over plain HTTP against a real bridge: the device's
 * side as form posts, the approving user's side with the admin page's session cookie.
 */
describe('device sign-in (RFC 8628), over HTTP', function () {
  this.timeout(30_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  const clock = new TestClock();
  let member: { key: string; user: { id: string; email: string } };
  let cookie = '';

  async function form(route: string, fields: Record<string, string>) {
    const res = await fetch(tb.url + route, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
  }
  const start = async (name = 'ci runner 7') =>
    (await form('/api/v1/auth/device/code', { device_name: name })).body as unknown as Started;
  const poll = (deviceCode: string) =>
    form('/api/v1/auth/device/token', { grant_type: GRANT, device_code: deviceCode });
  async function asUser(method: string, route: string, body?: unknown, csrf = true) {
    const headers: Record<string, string> = { cookie };
    if (csrf) headers['x-aibridge-csrf'] = '1';
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(tb.url + route, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  before(async () => {
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url, {}, undefined, { clock });
    member = await tb.addUser('device-dev@example.com', { team: 'platform' });
    await openSession();
  });
  async function openSession(): Promise<void> {
    cookie = await sessionCookie(tb.url, member.key);
  }
  after(async () => {
    await tb.close();
    await upstream.stop();
  });

  it('a device polls, the signed-in user approves, the device gets its own key once, and the key serves a request', async () => {
    const s = await start();
    assert.match(s.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    assert.match(s.device_code, /^aibd_/);
    assert.equal(s.verification_uri, `${tb.url}/device`);
    assert.equal(s.verification_uri_complete, `${tb.url}/device?user_code=${s.user_code}`);
    assert.equal(s.expires_in, 600);
    assert.equal(s.interval, 5);
    // The device code is stored only as its hash.
    assert.ok(!JSON.stringify(await tb.bridge.store.listDocs('device_grant')).includes(s.device_code));

    const pending = await poll(s.device_code);
    assert.equal(pending.status, 400);
    assert.equal(pending.body.error, 'authorization_pending');
    assert.equal(pending.headers.get('cache-control'), 'no-store');
    const tooFast = await poll(s.device_code);
    assert.equal(tooFast.body.error, 'slow_down');
    // Early polls change nothing stored: a public poll loop cannot keep the store rewriting.
    const stored = JSON.stringify(await tb.bridge.store.listDocs('device_grant'));
    for (let i = 0; i < 20; i++) assert.equal((await poll(s.device_code)).body.error, 'slow_down');
    assert.equal(JSON.stringify(await tb.bridge.store.listDocs('device_grant')), stored);
    clock.advance(10_000);
    assert.equal((await poll(s.device_code)).body.error, 'authorization_pending');

    const seen = await asUser('GET', `/api/v1/auth/device?userCode=${s.user_code.toLowerCase()}`);
    assert.equal(seen.status, 200);
    assert.equal(seen.body.deviceName, 'ci runner 7');
    const noCsrf = await asUser(
      'POST',
      '/api/v1/auth/device/approve',
      { userCode: s.user_code, approve: true },
      false,
    );
    assert.equal(noCsrf.status, 403);
    assert.equal((noCsrf.body as { error: { code: string } }).error.code, 'csrf_refused');
    const ok = await asUser('POST', '/api/v1/auth/device/approve', { userCode: s.user_code, approve: true });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.status, 'approved');

    clock.advance(15_000);
    const got = await poll(s.device_code);
    assert.equal(got.status, 200, JSON.stringify(got.body));
    const token = got.body as {
      access_token: string;
      token_type: string;
      key_id: string;
      expires_at: string;
    };
    assert.equal(token.token_type, 'Bearer');
    assert.equal(Date.parse(token.expires_at), clock.now() + 7 * 86_400_000);
    const keys = await tb.api<{ items: { id: string; name: string; userId: string }[] }>(
      'GET',
      `/api/v1/users/${member.user.email}/keys`,
      tb.adminKey,
    );
    const minted = keys.body.items.find((k) => k.id === token.key_id);
    assert.equal(minted?.name, 'ci runner 7');
    assert.equal(minted?.userId, member.user.id);

    const client = new Anthropic({
      authToken: token.access_token,
      apiKey: null,
      baseURL: `${tb.url}/anthropic`,
      maxRetries: 0,
    });
    const msg = await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'hello from a device' }],
    });
    assert.equal(msg.type, 'message');
    assert.ok(upstream.requests.some((r) => r.body.includes('hello from a device')));

    const replay = await poll(s.device_code);
    assert.equal(replay.status, 400);
    assert.equal(replay.body.error, 'invalid_grant');
    // Answered codes are gone for the approving side too.
    const again = await asUser('POST', '/api/v1/auth/device/approve', {
      userCode: s.user_code,
      approve: true,
    });
    assert.equal(again.status, 404);
  });

  it('an editor passes its callback: the page is told where it returns, the key is renewable and renews forward', async () => {
    const callback =
      'http://127.0.0.1:9/callback?vscode-scheme=code-oss&vscode-authority=aibridge.ai-bridge&vscode-path=%2Fauth-complete';
    const started = await form('/api/v1/auth/device/code', {
      device_name: 'vscode on laptop',
      redirect_uri: callback,
    });
    assert.equal(started.status, 200);
    const s = started.body as unknown as Started;
    const seen = await asUser('GET', `/api/v1/auth/device?userCode=${s.user_code}`);
    assert.equal(seen.body.redirectUri, callback);
    const ok = await asUser('POST', '/api/v1/auth/device/approve', { userCode: s.user_code, approve: true });
    assert.equal((ok.body.device as Record<string, unknown>).redirectUri, callback);
    const got = await poll(s.device_code);
    assert.equal(got.status, 200);
    const key = got.body.access_token as string;
    const me = async () =>
      (await (
        await fetch(`${tb.url}/api/v1/me`, { headers: { authorization: `Bearer ${key}` } })
      ).json()) as {
        key: { expiresAt: string; renewable?: boolean };
      };
    const before = await me();
    assert.equal(before.key.renewable, true);
    clock.advance(3 * 86_400_000);
    const renewed = await fetch(`${tb.url}/api/v1/auth/device/renew`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(renewed.status, 200);
    const after = (await renewed.json()) as { key: { expiresAt: string } };
    assert.equal(Date.parse(after.key.expiresAt) - Date.parse(before.key.expiresAt), 3 * 86_400_000);
    assert.equal((await me()).key.expiresAt, after.key.expiresAt);
    // Renewed again within the day, nothing moves (nothing is written: in a loop, each renewal
    // rewrote the embedded store's file on the event loop).
    clock.advance(3_600_000);
    const again = await fetch(`${tb.url}/api/v1/auth/device/renew`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(again.status, 200);
    assert.equal(((await again.json()) as { key: { expiresAt: string } }).key.expiresAt, after.key.expiresAt);
    // A key an admin issued by hand is not the device's to extend.
    const refused = await fetch(`${tb.url}/api/v1/auth/device/renew`, {
      method: 'POST',
      headers: { authorization: `Bearer ${member.key}` },
    });
    assert.equal(refused.status, 403);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'key_not_renewable');
    await openSession(); // the admin-page session did not outlive the three days
  });

  it('renews a device key for at most AIBRIDGE_DEVICE_KEY_MAX_DAYS (30) after its sign-in; then it runs out and a new sign-in is needed', async () => {
    const s = await start('laptop, a month');
    await asUser('POST', '/api/v1/auth/device/approve', { userCode: s.user_code, approve: true });
    const got = await poll(s.device_code);
    assert.equal(got.status, 200);
    const key = got.body.access_token as string;
    const signedInAt = clock.now();
    const day = 86_400_000;
    const renew = async (): Promise<number> => {
      const res = await fetch(`${tb.url}/api/v1/auth/device/renew`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}` },
      });
      const body = (await res.json()) as { key: { expiresAt: string } };
      assert.equal(res.status, 200, JSON.stringify(body));
      return Date.parse(body.key.expiresAt) - signedInAt;
    };
    // Used every few days: each renewal 7 days ahead, until the 30th day after the sign-in.
    for (const [at, until] of [
      [5, 12],
      [11, 18],
      [17, 24],
      [23, 30],
      [26, 30],
      [29, 30],
    ] as const) {
      clock.advance(signedInAt + at * day - clock.now());
      assert.equal(await renew(), until * day, `renewed on day ${at}`);
    }
    clock.advance(signedInAt + 30 * day + 1 - clock.now());
    const late = await fetch(`${tb.url}/api/v1/me`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(late.status, 401, 'the key ran out');
    await openSession(); // the admin-page session did not outlive the month
  });

  it('a device key that approves a new sign-in passes its bound on: keys approved one with another all end with the first sign-in’s 30 days', async () => {
    const day = 86_400_000;
    const viaKey = async (approver: string, name: string) => {
      const s = await start(name);
      const res = await fetch(`${tb.url}/api/v1/auth/device/approve`, {
        method: 'POST',
        headers: { authorization: `Bearer ${approver}`, 'content-type': 'application/json' },
        body: JSON.stringify({ userCode: s.user_code, approve: true }),
      });
      const body = (await res.json()) as { error?: { code: string } };
      if (res.status !== 200) return { status: res.status, code: body.error?.code };
      const got = await poll(s.device_code);
      assert.equal(got.status, 200);
      return { status: 200, key: got.body.access_token as string };
    };
    const info = async (key: string) =>
      (
        (await (
          await fetch(`${tb.url}/api/v1/me`, { headers: { authorization: `Bearer ${key}` } })
        ).json()) as {
          key: { expiresAt: string; renewableUntil?: string };
        }
      ).key;
    const renew = (key: string) =>
      fetch(`${tb.url}/api/v1/auth/device/renew`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}` },
      });
    // The first: approved in the admin page (a session opened with an admin-issued key).
    const s = await start('first');
    await asUser('POST', '/api/v1/auth/device/approve', { userCode: s.user_code, approve: true });
    const first = (await poll(s.device_code)).body.access_token as string;
    const t0 = clock.now();
    assert.equal((await info(first)).renewableUntil, new Date(t0 + 30 * day).toISOString());
    // Day 5: the first key approves the next sign-in (and renews itself).
    clock.advance(5 * day);
    await renew(first);
    const second = await viaKey(first, 'second');
    assert.equal(second.status, 200);
    const s2 = await info(second.key!);
    assert.equal(
      s2.renewableUntil,
      new Date(t0 + 30 * day).toISOString(),
      'the first sign-in’s bound, not 30 days from now',
    );
    // Kept in use (renewed every few days) until day 25, where a third from the second lives 5
    // days, not 7; renewals stop at day 30 too.
    for (const d of [10, 16, 22]) {
      clock.advance(t0 + d * day - clock.now());
      assert.equal((await renew(second.key!)).status, 200, `day ${d}`);
    }
    clock.advance(t0 + 25 * day - clock.now());
    const third = await viaKey(second.key!, 'third');
    assert.equal(third.status, 200);
    assert.equal((await info(third.key!)).expiresAt, new Date(t0 + 30 * day).toISOString());
    assert.equal(await (await renew(third.key!)).status, 200);
    assert.equal((await info(third.key!)).expiresAt, new Date(t0 + 30 * day).toISOString());
    // Half a minute before the bound: no more approvals with these keys.
    clock.advance(30 * day - 30_000 - (clock.now() - t0));
    assert.deepEqual(await viaKey(third.key!, 'fourth'), { status: 403, code: 'sign_in_renewal_ended' });
    clock.advance(30_001);
    assert.equal(
      (await fetch(`${tb.url}/api/v1/me`, { headers: { authorization: `Bearer ${third.key}` } })).status,
      401,
    );
    await openSession();
  });

  it('refuses callbacks a browser would execute, and malformed ones', async () => {
    for (const bad of [
      'javascript:alert(1)',
      'data:text/html,x',
      'file:///etc/passwd',
      'not a uri',
      'https://u:p@evil.example/',
      'vscode://x/y#frag',
    ]) {
      const r = await form('/api/v1/auth/device/code', { device_name: 'x', redirect_uri: bad });
      assert.equal(r.status, 400, bad);
      assert.equal(r.body.error, 'invalid_request', bad);
    }
    const ok = await form('/api/v1/auth/device/code', {
      device_name: 'x',
      redirect_uri: 'vscode://aibridge.ai-bridge/auth-complete?nonce=1',
    });
    assert.equal(ok.status, 200);
  });

  it('of polls racing after the approval, exactly one receives the key', async () => {
    const s = await start('racer');
    const ok = await asUser('POST', '/api/v1/auth/device/approve', { userCode: s.user_code, approve: true });
    assert.equal(ok.status, 200);
    const answers = await Promise.all(Array.from({ length: 8 }, () => poll(s.device_code)));
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, 400, 400, 400, 400, 400, 400, 400]);
    assert.ok(answers.filter((a) => a.status === 400).every((a) => a.body.error === 'invalid_grant'));
  });

  it('a denied sign-in answers access_denied once, then the code is unknown', async () => {
    const s = await start();
    const denied = await asUser('POST', '/api/v1/auth/device/approve', {
      userCode: s.user_code,
      approve: false,
    });
    assert.equal(denied.body.status, 'denied');
    clock.advance(5_000);
    assert.equal((await poll(s.device_code)).body.error, 'access_denied');
    clock.advance(5_000);
    assert.equal((await poll(s.device_code)).body.error, 'invalid_grant');
  });

  it('a code nobody approved expires after 10 minutes and can no longer be approved', async () => {
    const s = await start();
    clock.advance(600_000);
    assert.equal((await poll(s.device_code)).body.error, 'expired_token');
    const late = await asUser('POST', '/api/v1/auth/device/approve', {
      userCode: s.user_code,
      approve: true,
    });
    assert.equal(late.status, 404);
    assert.equal((late.body as { error: { code: string } }).error.code, 'user_code_not_found');
  });

  it('wrong user codes get user_code_not_found, then the guesser is throttled', async () => {
    clock.advance(61_000);
    const s = await start();
    const wrong = s.user_code === 'BBBB-BBBB' ? 'CCCC-CCCC' : 'BBBB-BBBB';
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++)
      statuses.push(
        (await asUser('POST', '/api/v1/auth/device/approve', { userCode: wrong, approve: true })).status,
      );
    assert.deepEqual(statuses, [...Array(10).fill(404), 429]);
    // Even the right code waits out the minute: guesses would otherwise continue.
    assert.equal((await asUser('GET', `/api/v1/auth/device?userCode=${s.user_code}`)).status, 429);
    clock.advance(61_000);
    assert.equal((await asUser('GET', `/api/v1/auth/device?userCode=${s.user_code}`)).status, 200);
  });

  it('answers malformed token requests in the OAuth error shape', async () => {
    const wrongGrant = await form('/api/v1/auth/device/token', { grant_type: 'password', device_code: 'x' });
    assert.equal(wrongGrant.status, 400);
    assert.equal(wrongGrant.body.error, 'unsupported_grant_type');
    assert.equal(
      (await form('/api/v1/auth/device/token', { grant_type: GRANT })).body.error,
      'invalid_request',
    );
    assert.equal((await poll(`aibd_${'A'.repeat(43)}`)).body.error, 'invalid_grant');
    const long = await form('/api/v1/auth/device/code', { device_name: 'x'.repeat(101) });
    assert.equal(long.body.error, 'invalid_request');
  });

  it('serves the verification page with the admin page CSP', async () => {
    const res = await fetch(`${tb.url}/device?user_code=BCDF-GHJK`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const html = await res.text();
    assert.match(html, /<script src="\/device\/device.js"/);
    assert.doesNotMatch(html, /<script>/);
    const js = await fetch(`${tb.url}/device/device.js`);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
  });
});

/** `aibridge login` from source, as a child process, approved over HTTP (test/e2e approves in Chromium). */
describe('aibridge login and aibridge env', function () {
  this.timeout(40_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;

  before(async () => {
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url);
  });
  after(async () => {
    await tb.close();
    await upstream.stop();
  });

  function cli(args: string[], env: Record<string, string>) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts', ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: env.HOME ?? os.tmpdir(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const done = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    return { child, out: () => stdout, err: () => stderr, done };
  }

  it('prints a code, waits for approval, stores the key 0600, and env exports it for Claude Code and the SDKs', async () => {
    const member = await tb.addUser('login-dev@example.com');
    const home = tempDirSync('aibridge-login-');
    const xdg = path.join(home, 'xdg');
    const run = cli(['login', '--url', tb.url, '--name', 'build box'], { HOME: home, XDG_CONFIG_HOME: xdg });
    const deadline = Date.now() + 15_000;
    let code: string | undefined;
    while (!code && Date.now() < deadline) {
      code = /confirm the code ([A-Z]{4}-[A-Z]{4})/.exec(run.out())?.[1];
      if (!code) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(code, `no code printed: ${run.out()} ${run.err()}`);
    assert.match(run.out(), new RegExp(`${tb.url}/device\\?user_code=${code}`));
    const ok = await tb.api('POST', '/api/v1/auth/device/approve', member.key, {
      userCode: code,
      approve: true,
    });
    assert.equal(ok.status, 200);
    assert.equal(await run.done, 0, run.err());
    // Codex takes no base URL from the environment: the sign-in says where it is set instead.
    assert.match(run.out(), new RegExp(`config\\.toml \\(base_url = "${tb.url}/openai/v1"`));

    const file = path.join(xdg, 'aibridge', 'credentials.json');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
    const creds = JSON.parse(fs.readFileSync(file, 'utf8')) as { key: string; url: string };
    assert.equal(creds.url, tb.url);
    assert.notEqual(creds.key, member.key);

    const env = cli(['env'], { HOME: home, XDG_CONFIG_HOME: xdg });
    assert.equal(await env.done, 0, env.err());
    const vars = Object.fromEntries(
      [...env.out().matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]),
    );
    assert.deepEqual(Object.keys(vars).sort(), [
      'ANTHROPIC_AUTH_TOKEN',
      'ANTHROPIC_BASE_URL',
      'COPILOT_MODEL',
      'COPILOT_PROVIDER_API_KEY',
      'COPILOT_PROVIDER_BASE_URL',
      'COPILOT_PROVIDER_HEADERS',
      'COPILOT_PROVIDER_TYPE',
      'OPENAI_API_KEY',
      'OPENAI_BASE_URL',
    ]);
    assert.equal(vars.COPILOT_PROVIDER_BASE_URL, `${tb.url}/anthropic`, 'Copilot CLI through the bridge too');
    const client = new Anthropic({
      authToken: vars.ANTHROPIC_AUTH_TOKEN!,
      apiKey: null,
      baseURL: vars.ANTHROPIC_BASE_URL!,
      maxRetries: 0,
    });
    const msg = await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'hello from aibridge env' }],
    });
    assert.equal(msg.type, 'message');
    const fish = cli(['env', '--shell', 'fish'], { HOME: home, XDG_CONFIG_HOME: xdg });
    assert.equal(await fish.done, 0);
    assert.match(fish.out(), /^set -gx ANTHROPIC_AUTH_TOKEN 'aib_[\w-]+';$/m);
  });
});

describe('AIBRIDGE_DEVICE_KEY_MAX_DAYS', () => {
  const load = (env: Record<string, string>) => loadConfig({ port: '0', 'data-dir': os.tmpdir() }, env);
  it('is 30 days by default, 0 turns the bound off, and less than a key lasts is refused at start-up', () => {
    assert.equal(load({}).deviceKeyMaxDays, 30);
    assert.equal(load({ AIBRIDGE_DEVICE_KEY_MAX_DAYS: '0' }).deviceKeyMaxDays, 0);
    assert.throws(
      () => load({ AIBRIDGE_DEVICE_KEY_DAYS: '14', AIBRIDGE_DEVICE_KEY_MAX_DAYS: '10' }),
      /AIBRIDGE_DEVICE_KEY_MAX_DAYS.*at least AIBRIDGE_DEVICE_KEY_DAYS \(14\), got 10/,
    );
    assert.throws(() => load({ AIBRIDGE_DEVICE_KEY_MAX_DAYS: 'forever' }), /whole number/);
  });
});
