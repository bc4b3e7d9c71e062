import assert from 'node:assert/strict';
import { BridgeApiError, BridgeClient, fetchAuthConfig } from '../../extension/api/bridge-client';
import {
  DeviceSignInError,
  startDeviceSignIn,
  Waker,
  waitForDeviceKey,
} from '../../extension/auth/device-sign-in';
import { renew, renewalDue, renewalsEnded } from '../../extension/auth/renewal';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { sessionCookie } from '../helpers/session';

const DAY = 86_400_000;

/**
 * The extension's browser sign-in, minus the browser: the same calls the extension makes, against a
 * real bridge; the approving user's side is the verification page's own API with a session cookie.
 */
describe('extension: browser sign-in and device-key renewal against a real bridge', function () {
  this.timeout(30_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  const clock = new TestClock();
  let cookie = '';
  /** The approving user's own key, for a new admin-page session once the test clock has moved on. */
  let devKey = '';

  async function approve(userCode: string, yes = true): Promise<Record<string, unknown>> {
    const res = await fetch(`${tb.url}/api/v1/auth/device/approve`, {
      method: 'POST',
      headers: { cookie, 'x-aibridge-csrf': '1', 'content-type': 'application/json' },
      body: JSON.stringify({ userCode, approve: yes }),
    });
    assert.equal(res.status, 200);
    return (await res.json()) as Record<string, unknown>;
  }

  /** A device signed in as the extension signs in, approved in the admin-page session: its key and a client with it. */
  async function signedInDevice(name: string) {
    const grant = await startDeviceSignIn(
      tb.url,
      name,
      `vscode://aibridge.ai-bridge/auth-complete?nonce=${name}`,
    );
    await approve(grant.userCode);
    const got = await waitForDeviceKey(tb.url, grant);
    return { got, client: new BridgeClient(tb.url, got.key) };
  }

  before(async () => {
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url, {}, undefined, { clock });
    const dev = await tb.addUser('browser-dev@example.com', { team: 'ide' });
    devKey = dev.key;
    cookie = await sessionCookie(tb.url, dev.key);
  });
  after(async () => {
    await tb.close();
    await upstream.stop();
  });

  it('without single sign-on the bridge says so, and the extension falls back to a key', async () => {
    assert.deepEqual(await fetchAuthConfig(tb.url), { sso: null, keySignIn: true });
    await assert.rejects(
      fetchAuthConfig('http://127.0.0.1:9'),
      (e: unknown) => e instanceof BridgeApiError && e.status === 0,
    );
  });

  it('the callback wakes the poll: the key arrives at once after approval, not at the next 5 s interval', async () => {
    const callback = 'vscode://aibridge.ai-bridge/auth-complete?nonce=abc';
    const grant = await startDeviceSignIn(tb.url, 'VS Code on test (ws)', callback);
    assert.equal(grant.interval, 5);
    assert.match(grant.verificationUri, /\/device\?user_code=[A-Z]{4}-[A-Z]{4}$/);
    const waker = new Waker();
    const waiting = waitForDeviceKey(tb.url, grant, { waker });
    // Let the first poll (pending) happen, then approve and come back through the URI handler.
    await new Promise((r) => setTimeout(r, 300));
    const answer = await approve(grant.userCode);
    assert.equal((answer.device as { redirectUri: string }).redirectUri, callback);
    const t0 = Date.now();
    waker.wake();
    const got = await waiting;
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
    assert.match(got.key, /^aib_/);
    const me = await new BridgeClient(tb.url, got.key).me();
    assert.equal(me.user.email, 'browser-dev@example.com');
    assert.equal(me.key.name, 'VS Code on test (ws)');
    assert.equal(me.key.renewable, true);
    assert.ok(me.key.expiresAt && Date.parse(me.key.expiresAt) - Date.now() > 6.9 * DAY, 'a 7-day key');
    // Signing out revokes it: the next call is refused.
    await new BridgeClient(tb.url, got.key).revokeKey(me.key.id);
    await assert.rejects(
      new BridgeClient(tb.url, got.key).me(),
      (e: unknown) => e instanceof BridgeApiError && e.unauthorized,
    );
  });

  it('a denial in the browser ends the wait with access_denied; cancelling ends it at once', async () => {
    const grant = await startDeviceSignIn(
      tb.url,
      'denied',
      'vscode://aibridge.ai-bridge/auth-complete?nonce=d',
    );
    const waker = new Waker();
    const waiting = waitForDeviceKey(tb.url, grant, { waker });
    await new Promise((r) => setTimeout(r, 200));
    await approve(grant.userCode, false);
    waker.wake();
    await assert.rejects(
      waiting,
      (e: unknown) => e instanceof DeviceSignInError && e.code === 'access_denied',
    );

    const other = await startDeviceSignIn(
      tb.url,
      'cancelled',
      'vscode://aibridge.ai-bridge/auth-complete?nonce=c',
    );
    const abort = new AbortController();
    const pending = waitForDeviceKey(tb.url, other, { signal: abort.signal });
    setTimeout(() => abort.abort(), 200);
    const t0 = Date.now();
    await assert.rejects(pending, (e: unknown) => e instanceof DeviceSignInError && e.code === 'cancelled');
    assert.ok(Date.now() - t0 < 2000);
  });

  it('a bridge that refuses the callback is a clear error, not a hang', async () => {
    await assert.rejects(
      startDeviceSignIn(tb.url, 'x', 'javascript:alert(1)'),
      (e: unknown) => e instanceof DeviceSignInError && e.code === 'refused' && /scheme/.test(e.message),
    );
  });

  it('a bridge that names a sign-in page other than a web address is refused, nothing opened', async () => {
    // A hostile bridge answering the device code with `file:`, `vscode:` or `command:` would have the
    // extension open it on this machine.
    for (const page of [
      'file:///etc/passwd',
      'vscode://vscode.git/clone?url=x',
      'command:workbench.action.terminal.new',
    ]) {
      const fake = async () =>
        new Response(
          JSON.stringify({
            device_code: 'd',
            user_code: 'ABCD-EFGH',
            verification_uri_complete: page,
            interval: 5,
          }),
          { status: 200, headers: { 'content-type': 'application/json' } },
        );
      await assert.rejects(
        startDeviceSignIn(
          'https://bridge.example',
          'x',
          'vscode://aibridge.ai-bridge/auth-complete?nonce=n',
          fake,
        ),
        (e: unknown) => e instanceof DeviceSignInError && e.code === 'refused' && /http\(s\)/.test(e.message),
        page,
      );
    }
  });

  it('renews a device key days before it ends, and turns a refusal into "sign in again"', async () => {
    const created = '2026-12-01T00:00:00.000Z';
    const key = { createdAt: created, expiresAt: '2026-12-08T00:00:00.000Z', renewable: true as const };
    const at = (iso: string) => Date.parse(iso);
    assert.equal(renewalDue(key, at('2026-12-04T00:00:00.000Z')), false, 'four days left');
    assert.equal(renewalDue(key, at('2026-12-05T00:00:00.000Z')), true, 'three days left');
    assert.equal(
      renewalDue({ ...key, renewable: undefined }, at('2026-12-07T23:00:00.000Z')),
      false,
      'not a device key',
    );
    const oneDay = { createdAt: created, expiresAt: '2026-12-02T00:00:00.000Z', renewable: true as const };
    assert.equal(renewalDue(oneDay, at('2026-12-01T11:00:00.000Z')), false);
    assert.equal(renewalDue(oneDay, at('2026-12-01T12:00:00.000Z')), true, 'half the life of a short key');

    const { got, client } = await signedInDevice('renewer');
    const before = (await client.me()).key;
    // Days later (a renewal that would move the expiry by less than a day writes nothing).
    clock.advance(2 * 86_400_000);
    const out = await renew(() => client.renewKey());
    assert.equal(out.type, 'renewed');
    assert.ok(
      out.type === 'renewed' && Date.parse(out.key.expiresAt ?? '') > Date.parse(before.expiresAt ?? ''),
    );
    await client.revokeKey(before.id);
    const refused = await renew(() => client.renewKey());
    assert.equal(refused.type, 'refused');
    const offline = await renew(() => new BridgeClient('http://127.0.0.1:9', got.key).renewKey());
    assert.equal(offline.type, 'later');
  });

  it('tells when renewals end: the bridge stops moving the expiry 30 days after the sign-in (AIBRIDGE_DEVICE_KEY_MAX_DAYS)', async () => {
    cookie = await sessionCookie(tb.url, devKey); // the earlier tests moved the clock past the last session
    const { client } = await signedInDevice('month-long');
    let key = (await client.me()).key;
    const signedIn = Date.parse(key.createdAt);
    assert.equal(key.renewableUntil, new Date(signedIn + 30 * DAY).toISOString(), 'the bridge says how far');
    let endedOn: number | undefined;
    // The extension's hourly check, a day at a time: renewed whenever due, for 29 days.
    for (let d = 1; d <= 29; d++) {
      clock.advance(signedIn + d * DAY - clock.now());
      if (!renewalDue(key, clock.now())) continue;
      const out = await renew(() => client.renewKey());
      assert.equal(out.type, 'renewed', `day ${d}`);
      if (out.type !== 'renewed') return;
      key = out.key;
      if (renewalsEnded(key)) endedOn ??= d;
    }
    assert.equal(Date.parse(key.expiresAt ?? ''), signedIn + 30 * DAY, 'renewed up to the 30th day');
    assert.ok(
      endedOn !== undefined && endedOn >= 23,
      `told the renewals ended on day ${endedOn}, not before`,
    );
    clock.advance(signedIn + 30 * DAY + 1 - clock.now());
    const after = await renew(() => client.renewKey());
    assert.equal(after.type, 'refused', 'run out: sign in again');
  });
});

describe('extension: when a device key’s renewals have ended', () => {
  const key = (expiresAt: string | null, renewableUntil?: string) => ({
    renewable: true as const,
    expiresAt,
    ...(renewableUntil === undefined ? {} : { renewableUntil }),
  });
  it('only once its expiry has reached the bound the bridge gave, never for a key without one', () => {
    assert.equal(renewalsEnded(key('2027-01-24T00:00:00.000Z', '2027-01-31T00:00:00.000Z')), false);
    assert.equal(renewalsEnded(key('2027-01-31T00:00:00.000Z', '2027-01-31T00:00:00.000Z')), true);
    assert.equal(renewalsEnded(key('2027-01-31T00:00:00.000Z')), false, 'an older bridge, or no bound');
    assert.equal(renewalsEnded(key(null, '2027-01-31T00:00:00.000Z')), false);
    assert.equal(
      renewalsEnded({ ...key('2027-01-31T00:00:00.000Z', '2027-01-31T00:00:00.000Z'), renewable: undefined }),
      false,
    );
  });
});
