import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { startEverythingHttp } from '../helpers/mcp-servers';
import { launchChromium } from './browser';

const ARTIFACTS = path.resolve('test-artifacts', 'admin');
const XSS = '<img src=x onerror="window.__xss=1"> summarise the <b>build</b> log';

/**
 * The admin page in a real browser against a real bridge and the upstream mock, both on port 0:
 * sign in, create a user and key, watch a request arrive live, set a budget, find a tool call in
 * the audit, and check hostile text stays text. One browser for the whole file.
 */
describe('admin web page (e2e, Chromium)', function () {
  this.timeout(120_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  /** Console lines about the CSP and uncaught page errors: both must stay empty. */
  const violations: string[] = [];
  let devKey = '';
  let mcpServer: { url: string; stop(): Promise<void> } | undefined;

  async function shot(name: string, p: Page = page): Promise<void> {
    await p.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  }

  function watch(p: Page): void {
    p.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
    });
    p.on('pageerror', (err) => violations.push(`page error: ${err.message}`));
  }

  async function ask(
    key: string,
    opts: { prompt?: string; model?: string; session?: string } = {},
  ): Promise<void> {
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': key,
        'anthropic-version': '2023-06-01',
        'content-type': 'application/json',
        'user-agent': 'claude-cli/2.1.0 (external, cli)',
        ...(opts.session ? { 'x-claude-code-session-id': opts.session } : {}),
      },
      body: JSON.stringify({
        model: opts.model ?? 'claude-sonnet-4-6',
        max_tokens: 100,
        stream: true,
        messages: [{ role: 'user', content: opts.prompt ?? 'hello' }],
      }),
    });
    await res.text();
    assert.equal(res.status, 200);
  }

  async function go(hash: string): Promise<void> {
    await page.goto(`${tb.url}/admin#/${hash}`);
    await page.waitForSelector(`main[data-page="${hash}"]`);
  }

  before(async () => {
    // Always from the current sources: a stale dist/admin would test yesterday's page.
    execFileSync(process.execPath, ['scripts/build-admin.mjs'], { stdio: 'inherit' });
    await fs.mkdir(ARTIFACTS, { recursive: true });
    upstream = await new AnthropicMock().start();
    // A credentials key, so the provider keys page can store a key sealed.
    tb = await startBridge(upstream.url, {
      AIBRIDGE_MCP_CREDENTIALS_KEY: Buffer.alloc(32, 7).toString('base64'),
    });
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    page = await context.newPage();
    watch(page);
  });
  after(async () => {
    await browser?.close();
    await tb?.close();
    await mcpServer?.stop();
    await upstream?.stop();
  });

  it('signs in with a key, keeping it out of page storage (HttpOnly, SameSite=Strict cookie)', async () => {
    const res = await page.goto(`${tb.url}/admin`);
    assert.equal(res?.status(), 200);
    assert.match(res?.headers()['content-security-policy'] ?? '', /script-src 'self';/);
    await page.waitForSelector('form input[name=key]');
    await shot('sign-in');
    await page.fill('input[name=key]', tb.adminKey);
    await page.click('button[type=submit]');
    await page.waitForSelector('main[data-page=overview]');
    assert.match((await page.textContent('.who')) ?? '', /admin@localhost \(admin\)/);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'aibridge_session');
    assert.ok(session, 'no session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.ok(!session.value.includes(tb.adminKey));
    const visible = await page.evaluate(
      () => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie,
    );
    assert.ok(!visible.includes('aib_'), `the key or cookie is readable by scripts: ${visible}`);
    assert.equal(await page.locator('input[name=key]').count(), 0, 'the sign-in form is gone');
    await page.waitForSelector('[data-testid=live-state]:has-text("live")');
  });

  it('creates a user with a team and role, issues keys in a copy-once dialog with a VS Code link, revokes one', async () => {
    await go('users');
    await page.fill('[data-testid=new-user] input[name=email]', 'dev@example.com');
    await page.fill('[data-testid=new-user] input[name=name]', 'Dev <script>alert(1)</script>');
    await page.fill('[data-testid=new-user] input[name=team]', 'platform');
    await page.selectOption('[data-testid=new-user] select[name=role]', 'member');
    await page.click('[data-testid=new-user] button[type=submit]');
    const row = page.locator('tr[data-user="dev@example.com"]');
    await row.waitFor();
    assert.match((await row.textContent()) ?? '', /platform.*member/);
    // Names are text: the script tag shows as typed.
    assert.match((await row.textContent()) ?? '', /Dev <script>alert\(1\)<\/script>/);
    await row.getByRole('button', { name: 'Keys' }).click();
    await page.fill('input[name=key-name]', 'laptop');
    await page.getByRole('button', { name: 'Issue key' }).click();
    const keyField = page.locator('[data-testid=new-key]');
    await keyField.waitFor();
    devKey = await keyField.inputValue();
    assert.match(devKey, /^aib_[A-Za-z0-9_-]{43}$/);
    const href = await page.getAttribute('[data-testid=connect-vscode]', 'href');
    assert.equal(
      href,
      `vscode://aibridge.ai-bridge/signin?url=${encodeURIComponent(tb.url)}&key=${encodeURIComponent(devKey)}`,
    );
    await shot('users-key-dialog');
    await page.getByRole('button', { name: 'Done' }).click();
    await keyField.waitFor({ state: 'detached' });
    // The key is gone from the page once the dialog closes; the list shows its prefix and last use.
    assert.ok(!(await page.content()).includes(devKey));
    await page.waitForSelector(`td:has-text("${devKey.slice(0, 10)}…")`);
    const me = await tb.api<{ user: { email: string } }>('GET', '/api/v1/me', devKey);
    assert.equal(me.body.user.email, 'dev@example.com');

    // A second key, revoked from the list: the bridge refuses it at once.
    await page.fill('input[name=key-name]', 'old laptop');
    await page.getByRole('button', { name: 'Issue key' }).click();
    const spare = await keyField.inputValue();
    await page.getByRole('button', { name: 'Done' }).click();
    const spareRow = page.locator('table.keys tr', { hasText: 'old laptop' });
    page.once('dialog', (d) => void d.accept());
    await spareRow.getByRole('button', { name: 'Revoke' }).click();
    await page
      .locator('table.keys tr', { hasText: 'old laptop' })
      .locator('td:has-text("revoked")')
      .waitFor();
    assert.equal((await tb.api('GET', '/api/v1/me', spare)).status, 401);
    assert.equal((await tb.api('GET', '/api/v1/me', devKey)).status, 200);
    // The key in use shows when it was last used.
    await page.getByRole('button', { name: 'Hide keys' }).click();
    await row.getByRole('button', { name: 'Keys' }).click();
    const laptop = page.locator('table.keys tr', { hasText: `${devKey.slice(0, 10)}…` });
    assert.match((await laptop.textContent()) ?? '', /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d.*\d{4}-\d\d-\d\d/);
    // Team and role change after creation; the bridge attributes the user's next request to the new team.
    await page.fill('[data-testid=edit-user] input[name=edit-team]', 'payments');
    await page.click('[data-testid=edit-user] button[type=submit]');
    await page.waitForFunction(
      () =>
        document.querySelector('tr[data-user="dev@example.com"]')?.textContent?.includes('payments') ?? false,
    );
    const moved = await tb.api<{ user: { team: string } }>('GET', '/api/v1/me', devKey);
    assert.equal(moved.body.user.team, 'payments');
    await page.fill('[data-testid=edit-user] input[name=edit-team]', 'platform');
    await page.click('[data-testid=edit-user] button[type=submit]');
    await page.waitForFunction(
      () =>
        document.querySelector('tr[data-user="dev@example.com"]')?.textContent?.includes('platform') ?? false,
    );
    await shot('users');
  });

  it('shows a request in the live feed within a second of it ending, tool calls included', async () => {
    await go('overview');
    await page.waitForSelector('[data-testid=live-state]:has-text("live")');
    // A small org budget: the overview shows spend against it, and the requests below cross its
    // thresholds, so the budgets page has alerts to show.
    const budget = await tb.api('PUT', '/api/v1/budgets', tb.adminKey, {
      scope: 'org',
      period: 'month',
      limitUsd: 0.0008,
      thresholds: [0.5, 1],
    });
    assert.equal(budget.status, 200);
    upstream.next({ kind: 'tool', name: 'read_file', input: { path: '/srv/build.log' } });
    const started = Date.now();
    await ask(devKey, { prompt: XSS, session: 'sess-e2e-1' });
    const ended = Date.now();
    const row = page.locator('[data-testid=live-feed] tr.feed-request', { hasText: 'dev@example.com' });
    await row.first().waitFor({ timeout: 1000 });
    const lag = Date.now() - ended;
    assert.ok(lag < 1000, `the row took ${lag} ms after the request ended`);
    await page
      .locator('[data-testid=live-feed] tr.feed-tool', { hasText: 'read_file' })
      .first()
      .waitFor({ timeout: 1000 });
    process.stdout.write(
      `      request took ${ended - started} ms; its feed row appeared ${lag} ms after it ended\n`,
    );
    // More traffic for the chart, the top users and the unknown-price list.
    await ask(devKey, { prompt: 'second', session: 'sess-e2e-1' });
    await ask(tb.adminKey, { prompt: 'from the admin' });
    await ask(devKey, { prompt: 'which model is this', model: 'mystery-model-1' });
    await page.locator('[data-testid=live-feed] tr.feed-request').nth(3).waitFor();
    // The org budget's alerts arrive on the same socket.
    await page
      .locator('[data-testid=live-feed] tr.feed-alert', { hasText: 'budget_threshold' })
      .first()
      .waitFor();
    await page.waitForSelector('[data-testid=chart-by-team] canvas');
    await page.waitForSelector('[data-testid=chart-by-model] canvas');
    // The charts' legends name the groups: the team and both models.
    await page.waitForSelector('[data-testid=chart-by-team] .u-legend :text("platform")');
    await page.waitForSelector('[data-testid=chart-by-model] .u-legend :text("mystery-model-1")');
    await page.waitForSelector('[data-testid=top-users] td:has-text("dev@example.com")');
    await page.waitForFunction(
      () => document.querySelector('[data-testid=stat-spend-today] .big')?.textContent !== '$0.00',
    );
    await page.waitForSelector('[data-testid=stat-spend-this-month] progress');
    await shot('overview');
    // The README's picture: refreshed on request (it changes with every run's timestamps).
    const readmeShot = path.resolve('docs', 'images', 'admin-overview.png');
    const missing = await fs.access(readmeShot).then(
      () => false,
      () => true,
    );
    if (missing || process.env.AIBRIDGE_UPDATE_SCREENSHOTS === '1')
      await fs.copyFile(path.join(ARTIFACTS, 'overview.png'), readmeShot);
  });

  it('creates a budget and shows it with its progress, then edits it', async () => {
    await go('budgets');
    const form = page.locator('[data-testid=budget-form]');
    await form.locator('select[name=scope]').selectOption('team');
    await form.locator('input[name=subject]').fill('platform');
    await form.locator('select[name=period]').selectOption('month');
    await form.locator('input[name=limitUsd]').fill('25');
    await form.locator('input[name=thresholds]').fill('0.5, 0.9');
    await form.locator('button[type=submit]').click();
    const row = page.locator('tr[data-budget="team:platform:month"]');
    await row.waitFor();
    assert.match((await row.textContent()) ?? '', /\$25\.00/);
    assert.equal(await row.locator('progress').getAttribute('max'), '25');
    await row.getByRole('button', { name: 'Edit' }).click();
    assert.equal(await form.locator('input[name=limitUsd]').inputValue(), '25');
    await form.locator('input[name=limitUsd]').fill('40');
    await form.locator('button[type=submit]').click();
    await page.waitForSelector('tr[data-budget="team:platform:month"] td:has-text("$40.00")');
    const stored = await tb.api<{ items: { scope: string; limitUsd: number; subject: string }[] }>(
      'GET',
      '/api/v1/budgets',
      tb.adminKey,
    );
    assert.deepEqual(
      stored.body.items.filter((b) => b.scope === 'team').map((b) => [b.subject, b.limitUsd]),
      [['platform', 40]],
    );
    // The org budget's alerts, each with its rule, observed value and baseline.
    const alert = page.locator('[data-testid=alerts] tbody tr', { hasText: 'budget_threshold' }).first();
    await alert.waitFor();
    assert.match((await alert.textContent()) ?? '', /budget_threshold.*org.*\$0\.\d+.*\$0\.000[48]/);
    await shot('budgets');

    // And deleted.
    page.once('dialog', (d) => void d.accept());
    await row.getByRole('button', { name: 'Delete' }).click();
    await row.waitFor({ state: 'detached' });
    const left = await tb.api<{ items: { scope: string }[] }>('GET', '/api/v1/budgets', tb.adminKey);
    assert.deepEqual(
      left.body.items.map((b) => b.scope),
      ['org'],
    );
  });

  it('finds the tool call in the audit, shows its detail, exports the filter, and keeps hostile text inert', async () => {
    await go('audit');
    const search = page.locator('[data-testid=audit-search]');
    await search.locator('input[name=tool]').fill('read_file');
    await search.locator('button[type=submit]').click();
    const rows = page.locator('[data-testid=audit-results] tbody tr');
    await page.waitForFunction(
      () => document.querySelectorAll('[data-testid=audit-results] tbody tr').length === 1,
    );
    assert.match((await rows.first().textContent()) ?? '', /read_file/);
    await rows.first().click();
    const detail = page.locator('[data-testid=audit-detail]');
    await detail.locator('[data-testid=audit-tool-call]').waitFor();
    assert.match(
      (await detail.locator('[data-testid=audit-tool-call]').textContent()) ?? '',
      /read_file[\s\S]*\/srv\/build\.log/,
    );
    // The prompt is shown exactly as typed, as text: no element was made of it and no handler ran.
    assert.equal(await detail.locator('[data-testid=audit-prompt]').textContent(), XSS);
    assert.equal(await page.locator('main img, main b').count(), 0);
    assert.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);
    await shot('audit');

    const href = await page.getAttribute('[data-testid=export-jsonl]', 'href');
    assert.equal(href, '/api/v1/audit/export?tool=read_file&format=jsonl');
    const jsonl = await page.request.get(`${tb.url}${href}`);
    assert.equal(jsonl.status(), 200);
    const lines = (await jsonl.text()).trim().split('\n');
    assert.equal(lines.length, 1);
    assert.equal(JSON.parse(lines[0]!).toolCalls[0].name, 'read_file');
    const csv = await page.request.get(
      `${tb.url}${await page.getAttribute('[data-testid=export-csv]', 'href')}`,
    );
    assert.equal((await csv.text()).trim().split('\n').length, 2);
  });

  it('shows sessions, MCP servers and models with unknown prices, and sets a price', async () => {
    await go('sessions');
    await page.waitForSelector('[data-testid=sessions] td:has-text("sess-e2e-1")');
    await shot('sessions');
    // A real MCP server (the reference server over streamable HTTP), limited to two tools.
    mcpServer = await startEverythingHttp();
    const put = await tb.api<{ status: { state: string } }>(
      'PUT',
      '/api/v1/mcp/servers/everything',
      tb.adminKey,
      {
        transport: { type: 'http', url: mcpServer.url },
        tools: { allow: ['echo', 'get-sum'] },
      },
    );
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await go('mcp');
    const server = page.locator('[data-testid=mcp-servers] tr', { hasText: 'everything' });
    await server.waitFor();
    assert.match((await server.textContent()) ?? '', /http.*ready.*echo, get-sum/);
    await page.waitForSelector('[data-testid=unknown-prices] td:has-text("mystery-model-1")');
    await page
      .locator('[data-testid=unknown-prices] tr', { hasText: 'mystery-model-1' })
      .getByRole('button')
      .click();
    const form = page.locator('[data-testid=price-form]');
    assert.equal(await form.locator('input[name=model]').inputValue(), 'mystery-model-1');
    await form.locator('input[name=input_mtok]').fill('2');
    await form.locator('input[name=output_mtok]').fill('8');
    await form.locator('button[type=submit]').click();
    await page.waitForSelector('[data-testid=price-overrides] td:has-text("mystery-model-1")');
    await shot('mcp-prices');
  });

  it("adds a key to a provider instance's pool (never shown again), disables and removes it", async () => {
    const secret = 'sk-ant-e2e-spare-key-never-shown';
    await go('providers');
    const table = page.locator('[data-testid=keys-anthropic]');
    await table.waitFor();
    const form = page.locator('[data-testid=add-key-anthropic]');
    await form.locator('input[name=name]').fill('spare');
    await form.locator('input[name=key]').fill(secret);
    await form.locator('input[name=weight]').fill('2');
    await form.locator('button[type=submit]').click();
    const row = table.locator('tr', { hasText: 'spare' });
    await row.waitFor();
    // The instance's own key joins the pool as "default"; the secret is nowhere on the page.
    await table.locator('td', { hasText: 'default' }).waitFor();
    assert.match((await row.textContent()) ?? '', /spare.*api.*2.*active/);
    assert.ok(!(await page.content()).includes(secret));
    assert.equal(await form.locator('input[name=key]').inputValue(), '');
    await shot('provider-keys');
    await row.getByRole('button', { name: 'Disable' }).click();
    await table.locator('tr', { hasText: 'spare' }).locator('td', { hasText: 'disabled' }).waitFor();
    page.once('dialog', (d) => void d.accept());
    await table.locator('tr', { hasText: 'spare' }).getByRole('button', { name: 'Remove' }).click();
    await table.locator('tr', { hasText: 'spare' }).waitFor({ state: 'detached' });
    const keys = await tb.api<{ items: { name: string }[] }>(
      'GET',
      '/api/v1/providers/anthropic/keys',
      tb.adminKey,
    );
    assert.deepEqual(keys.body.items, []);
  });

  it('shows a member only their own usage and keys', async () => {
    const member = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const p = await member.newPage();
    watch(p);
    try {
      await p.goto(`${tb.url}/admin`);
      await p.fill('input[name=key]', devKey);
      await p.click('button[type=submit]');
      await p.waitForSelector('main[data-page=overview]');
      const nav = (await p.textContent('nav')) ?? '';
      assert.ok(!nav.includes('Users') && !nav.includes('Budgets') && nav.includes('My keys'), nav);
      await p.waitForSelector('[data-testid=chart-by-model] canvas');
      assert.equal(await p.locator('[data-testid=chart-by-team]').count(), 0);
      await p.waitForSelector('[data-testid=live-state]:has-text("live")');
      await shot('member-overview', p);
      await p.goto(`${tb.url}/admin#/audit`);
      await p.waitForSelector('[data-testid=audit-results] tbody tr td');
      await p.waitForFunction(
        () => !document.querySelector('[data-testid=audit-results]')?.textContent?.includes('Nothing'),
      );
      const users = await p.locator('[data-testid=audit-results] tbody tr td:nth-child(2)').allTextContents();
      assert.ok(users.length >= 2);
      assert.deepEqual([...new Set(users)], ['dev@example.com']);
      await p.goto(`${tb.url}/admin#/keys`);
      await p.waitForSelector('table.keys td:has-text("laptop")');
      await shot('member-keys', p);
    } finally {
      await member.close();
    }
  });

  it('signs out: the session ends on the server and the page asks for a key again', async () => {
    const before = (await context.cookies()).find((c) => c.name === 'aibridge_session')!;
    await page.getByRole('button', { name: 'Sign out' }).click();
    // The page shows the sign-in form only once the server answered the sign-out. (The provider
    // keys page the previous test left open has an input named `key` of its own, so waiting for
    // that name alone could pass before the sign-out had even been sent.)
    await page.getByRole('button', { name: 'Sign out' }).waitFor({ state: 'detached' });
    await page.waitForSelector('input[name=key][placeholder^="aib_"]');
    assert.equal(
      (await context.cookies()).find((c) => c.name === 'aibridge_session'),
      undefined,
    );
    const replay = await fetch(`${tb.url}/api/v1/me`, {
      headers: { cookie: `aibridge_session=${before.value}` },
    });
    assert.equal(replay.status, 401);
    assert.deepEqual(violations, [], 'CSP violations or page errors');
  });
});
