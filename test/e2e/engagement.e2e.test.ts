import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { launchChromium, watchViolations } from './browser';

const ARTIFACTS = path.resolve('test-artifacts', 'admin');

/**
 * The admin page's Engagement view in a real browser, against a real bridge whose clock places
 * requests on different days: per team, the most and the least engaged users and who never used it.
 */
describe('admin web page: engagement (e2e, Chromium)', function () {
  this.timeout(120_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let browser: Browser;
  let page: Page;
  const violations: string[] = [];
  const clock = new TestClock(Date.parse('2026-11-02T09:00:00.000Z'));

  async function ask(key: string): Promise<void> {
    const res = await askMessages(tb.url, key, { model: 'claude-sonnet-4-5', max_tokens: 16 });
    assert.equal(res.status, 200);
  }

  before(async () => {
    execFileSync(process.execPath, ['scripts/build-admin.mjs'], { stdio: 'inherit' });
    await fs.mkdir(ARTIFACTS, { recursive: true });
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url, {}, undefined, { clock });
    const ada = await tb.addUser('ada@example.com', { team: 'platform' });
    const bob = await tb.addUser('bob@example.com', { team: 'platform' });
    const cy = await tb.addUser('cy@example.com', { team: 'web' });
    await tb.addUser('dee@example.com', { team: 'web' });
    await ask(ada.key);
    await ask(cy.key);
    clock.advance(86_400_000);
    await ask(ada.key);
    await ask(ada.key);
    await ask(bob.key);
    await tb.interceptions(5);
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    watchViolations(page, violations);
  });
  after(async () => {
    await browser?.close();
    await tb?.close();
    await upstream?.stop();
  });

  it('shows per team the most and least engaged users and who never used the bridge, with a CSV export', async () => {
    await page.goto(`${tb.url}/admin`);
    await page.fill('input[name=key]', tb.adminKey);
    await page.click('button[type=submit]');
    await page.waitForSelector('main[data-page=overview]');
    await page.click('nav a[href="#/engagement"]');
    await page.waitForSelector('main[data-page=engagement] [data-testid=engagement-team]');

    const team = (name: string) => page.locator(`[data-testid=engagement-team][data-team="${name}"]`);
    await team('platform').locator('[data-testid=most-engaged]').waitFor();
    assert.match(
      (await team('platform').locator('[data-testid=most-engaged] tbody tr').first().textContent()) ?? '',
      /^ada@example\.com2 ?3/,
      'the top user: two active days, three requests',
    );
    assert.match(
      (await team('platform').locator('[data-testid=least-engaged] tbody').textContent()) ?? '',
      /bob@example\.com1 ?1/,
    );
    assert.match(
      (await team('web').locator('[data-testid=most-engaged] tbody').textContent()) ?? '',
      /cy@example\.com/,
    );
    assert.match(
      (await team('web').locator('[data-testid=never-used]').textContent()) ?? '',
      /dee@example\.com/,
    );
    assert.match(
      (await team('(no team)').locator('[data-testid=never-used]').textContent()) ?? '',
      /admin@localhost/,
    );
    assert.equal(await team('platform').locator('[data-testid=never-used]').count(), 0);

    const href = await page.getAttribute('[data-testid=engagement-csv]', 'href');
    assert.match(href ?? '', /^\/api\/v1\/usage\/users\?.*format=csv/);
    const csv = await page.context().request.get(`${tb.url}${href}`);
    assert.equal(csv.status(), 200);
    const lines = (await csv.text()).trim().split('\r\n');
    assert.equal(lines.length, 6, 'a header and every provisioned user');
    assert.ok(lines.some((l) => l.startsWith('dee@example.com,')));

    await page.screenshot({ path: path.join(ARTIFACTS, 'engagement.png'), fullPage: true });
    assert.deepEqual(violations, []);
  });
});
