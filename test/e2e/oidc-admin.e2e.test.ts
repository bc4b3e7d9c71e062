import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { User } from '../../shared/identity';
import {
  CLIENT_ID,
  CLIENT_SECRET,
  freePort,
  OpenIdProvider,
  type SsoBridge,
  startSsoBridge,
} from '../helpers/oidc';
import { launchChromium } from './browser';

const ARTIFACTS = path.resolve('test-artifacts', 'admin');

/**
 * The admin page's SSO button in a real browser: the bridge's login route, the real provider's
 * login and consent pages, and back on the admin page signed in as the user the groups claim made.
 */
describe('admin page sign-in with the identity provider (e2e, Chromium)', function () {
  this.timeout(120_000);
  let idp: OpenIdProvider;
  let tb: SsoBridge;
  let browser: Browser;
  let page: Page;
  const violations: string[] = [];

  before(async () => {
    // Always from the current sources: a stale dist/admin would test yesterday's page.
    execFileSync(process.execPath, ['scripts/build-admin.mjs'], { stdio: 'inherit' });
    await fs.mkdir(ARTIFACTS, { recursive: true });
    const port = await freePort();
    idp = await new OpenIdProvider(`http://127.0.0.1:${port}/api/v1/auth/oidc/callback`, {
      clientSecret: CLIENT_SECRET,
    }).start();
    idp.users.set('ada', {
      email: 'ada@example.com',
      email_verified: true,
      name: 'Ada Lovelace',
      groups: ['eng-platform', 'aibridge-admins'],
    });
    tb = await startSsoBridge(port, {
      AIBRIDGE_OIDC_ISSUER: idp.url,
      AIBRIDGE_OIDC_CLIENT_ID: CLIENT_ID,
      AIBRIDGE_OIDC_CLIENT_SECRET: CLIENT_SECRET,
      AIBRIDGE_OIDC_SCOPES: 'openid email profile groups',
      AIBRIDGE_OIDC_DISPLAY_NAME: 'Acme SSO',
      AIBRIDGE_GROUP_TEAMS: JSON.stringify({ 'eng-platform': 'platform' }),
      AIBRIDGE_OIDC_ADMIN_GROUP: 'aibridge-admins',
    });
    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text()) && page.url().startsWith(tb.url))
        violations.push(m.text());
    });
    page.on('pageerror', (err) => violations.push(`page error: ${err.message}`));
  });
  after(async () => {
    await browser?.close();
    await tb?.close();
    await idp?.stop();
  });

  it('SSO button → the provider’s login form → back on the admin page as that user, team from the groups claim', async () => {
    await page.goto(`${tb.url}/admin`);
    const button = await page.waitForSelector('[data-testid=sso-sign-in]');
    assert.equal((await button.textContent())?.trim(), 'Sign in with Acme SSO');
    // The key form stays below it (AIBRIDGE_ADMIN_KEY_SIGNIN is on).
    await page.waitForSelector('form input[name=key]');
    await page.screenshot({ path: path.join(ARTIFACTS, 'sso-sign-in.png'), fullPage: true });

    await button.click();
    await page.waitForSelector('input[name=login]');
    assert.ok(page.url().startsWith(idp.url), page.url());
    await page.fill('input[name=login]', 'ada');
    await page.fill('input[name=password]', 'any password');
    await page.click('button[type=submit]');
    // The provider's consent page.
    await page.waitForSelector('input[name=prompt][value=consent]', { state: 'attached' });
    await page.click('button[type=submit]');

    await page.waitForSelector('main[data-page=overview]');
    assert.ok(page.url().startsWith(`${tb.url}/admin`), page.url());
    assert.match((await page.textContent('.who')) ?? '', /ada@example\.com \(admin\)/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'sso-signed-in.png'), fullPage: true });

    const res = await fetch(`${tb.url}/api/v1/users`, {
      headers: { authorization: `Bearer ${tb.adminKey}` },
    });
    const user = ((await res.json()) as { items: User[] }).items.find((u) => u.email === 'ada@example.com');
    assert.ok(user, 'created on first sign-in');
    assert.equal(user.team, 'platform');
    assert.equal(user.name, 'Ada Lovelace');
    assert.deepEqual(violations, []);
  });
});
