import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { type CodeServer, installExtension, startCodeServer, writeSettings } from './code-server';
import { launchBrowser, Workbench } from './workbench';

const run = promisify(execFile);

/** Screenshots of every step, kept after the run (CI uploads test-artifacts/). */
const ARTIFACTS = path.resolve('test-artifacts/e2e');
const VSIX = path.resolve('ai-bridge.vsix');
const ENV_VARS = ['ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_BASE_URL', 'OPENAI_API_KEY', 'OPENAI_BASE_URL'];
const PROMPT = 'Read /etc/motd for me <b>please</b>';
const TOOL = 'mcp__files__read_file';

/** A streamed Messages request through the bridge, as Claude Code would send it. */
async function ask(tb: TestBridge, key: string): Promise<{ id: string; endedAt: number }> {
  const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: {
      'x-api-key': key,
      'anthropic-version': '2023-06-01',
      'content-type': 'application/json',
      'user-agent': 'claude-cli/2.1.0 (external, cli)',
    },
    body: JSON.stringify({
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      stream: true,
      messages: [{ role: 'user', content: PROMPT }],
    }),
  });
  await res.text();
  const endedAt = Date.now();
  assert.equal(res.status, 200);
  return { id: res.headers.get('x-aibridge-interception-id') ?? '', endedAt };
}

/** Opens a new terminal and returns the bridge variables its shell sees. */
async function terminalEnv(wb: Workbench, dir: string, name: string): Promise<Record<string, string>> {
  const file = path.join(dir, `${name}.env`);
  await wb.runCommand('Terminal: Create New Terminal');
  const term = wb.page.locator('.terminal-wrapper.active .xterm');
  await term.waitFor({ state: 'visible', timeout: 20_000 });
  // Wait for the shell's prompt before typing.
  await wb.page.waitForFunction(
    () =>
      (document.querySelector('.terminal-wrapper.active .xterm-rows')?.textContent ?? '').trim().length > 0,
    undefined,
    { timeout: 20_000 },
  );
  await term.click();
  await wb.page.keyboard.type(
    `env | grep -E '^(ANTHROPIC|OPENAI)_' | sort > ${file}.tmp; mv ${file}.tmp ${file}`,
  );
  await wb.page.keyboard.press('Enter');
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const text = await fs.readFile(file, 'utf8');
      return Object.fromEntries(
        text
          .split('\n')
          .filter(Boolean)
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
    } catch {
      if (Date.now() > deadline) throw new Error(`the terminal did not write ${file}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Records, in the page, when the status bar item's text last changed (Date.now(), same machine). */
async function watchStatus(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { __statusChanges: { at: number; text: string }[] };
    w.__statusChanges = [];
    const el = document.querySelector('[id="aibridge.ai-bridge.aibridge.status"]');
    if (!el) throw new Error('no status bar item');
    new MutationObserver(() =>
      w.__statusChanges.push({ at: Date.now(), text: el.textContent ?? '' }),
    ).observe(el, { subtree: true, childList: true, characterData: true });
  });
}

async function statusChanges(page: Page): Promise<{ at: number; text: string }[]> {
  return page.evaluate(
    () => (window as unknown as { __statusChanges: { at: number; text: string }[] }).__statusChanges,
  );
}

describe('extension end to end: the .vsix in code-server, driven through Chromium', function () {
  // One code-server and one browser for every step; the steps run in order and build on each other.
  this.timeout(240_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let alice: { key: string; user: { id: string; email: string } };
  let bob: { key: string };
  let dir: string;
  let cs: CodeServer;
  let browser: Browser;
  let wb: Workbench;
  let interceptionId = '';

  before(async function () {
    this.timeout(300_000);
    await fs.rm(ARTIFACTS, { recursive: true, force: true });
    await fs.mkdir(ARTIFACTS, { recursive: true });
    // The .vsix a user would install: built by `npm run package` (build + vsce).
    await run('npm', ['run', '--silent', 'package'], { timeout: 180_000 });
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url);
    alice = await tb.addUser('alice-e2e@example.com');
    dir = await tempDir('aibridge-e2e-');
    const workspace = path.join(dir, 'workspace');
    await fs.mkdir(workspace);
    await writeSettings(dir, {
      'terminal.integrated.gpuAcceleration': 'off',
      'workbench.startupEditor': 'none',
      'workbench.tips.enabled': false,
      'extensions.autoCheckUpdates': false,
      'extensions.autoUpdate': false,
      'telemetry.telemetryLevel': 'off',
    });
    const installed = await installExtension(dir, VSIX);
    assert.match(installed, /successfully installed/);
    // A provisioned workspace: the extension signs in from these by itself (as Bob).
    bob = await tb.addUser('bob-e2e@example.com');
    cs = await startCodeServer(dir, workspace, { AIBRIDGE_URL: tb.url, AIBRIDGE_KEY: bob.key });
    browser = await launchBrowser();
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    wb = new Workbench(page, ARTIFACTS);
    await page.goto(`${cs.url}/?folder=${encodeURIComponent(workspace)}`);
    await wb.ready();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && wb) {
      await wb.screenshot(`failed-${(this.currentTest.title ?? 'step').replace(/\W+/g, '-').slice(0, 40)}`);
    }
  });

  after(async () => {
    await browser?.close();
    await cs?.stop();
    await tb?.close();
    await upstream?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('activates on startup and signs in by itself from AIBRIDGE_URL and AIBRIDGE_KEY', async () => {
    const text = await wb.waitForStatus(/tok/, 60_000);
    assert.equal(text, '0 tok · $0');
    await wb.runCommand('AI Bridge: Show Diagnostics');
    await wb.waitForNotification(/as bob-e2e@example\.com/);
    await wb.screenshot('signed-in-from-env');
  });

  it('signs out of the environment key', async () => {
    await wb.runCommand('AI Bridge: Sign Out');
    const text = await wb.waitForStatus(/Sign In/);
    assert.equal(text, 'AI Bridge: Sign In');
    await wb.screenshot('signed-out');
  });

  it('signs in with the command: the bridge AIBRIDGE_URL names has no SSO, so it asks for a key, verified with GET /api/v1/me', async () => {
    await wb.runCommand('AI Bridge: Sign In');
    await wb.answerInput(alice.key, /bridge key/);
    await wb.waitForNotification(/signed in as alice-e2e@example\.com/);
    const text = await wb.waitForStatus(/tok/);
    assert.match(text, /^0 tok · \$0$/);
    await wb.screenshot('signed-in-command');
  });

  it('a request through the bridge changes the status bar text', async () => {
    await watchStatus(wb.page);
    upstream.next({ kind: 'tool', name: TOOL, input: { path: '/etc/motd' } });
    const { id, endedAt } = await ask(tb, alice.key);
    interceptionId = id;
    // The mock reports 25 input, 12 output, 100 cache read and 7 cache write tokens.
    const text = await wb.waitForStatus(/^144 tok · \$0\.\d\d$|^144 tok · <\$0\.01$/);
    const change = (await statusChanges(wb.page)).find((c) => c.text.includes('144 tok'));
    assert.ok(change, 'the change was observed');
    const latency = change.at - endedAt;
    console.log(`      status bar updated ${latency} ms after the response ended (${text})`);
    // The extension renders synchronously on the event; the slack is for a loaded CI machine.
    assert.ok(latency < 1000, `status bar updated ${latency} ms after the response ended`);
    const tooltip = await wb.statusItem().getAttribute('aria-label');
    assert.match(tooltip ?? '', /live/);
    await wb.screenshot('status-after-request');
  });

  it('the audit view shows the request and its tool call; selecting it opens the details', async () => {
    // Clicking the status bar item opens the audit view.
    await wb.statusItem().click();
    const pane = wb.page.locator('.pane', {
      has: wb.page.locator('.pane-header', { hasText: 'Interceptions' }),
    });
    const row = pane.locator('.monaco-list-row', { hasText: 'claude-sonnet-4-6' }).first();
    await row.waitFor({ state: 'visible', timeout: 20_000 });
    // The row names its tool call, so recent tool calls show without expanding it.
    assert.match(
      (await row.textContent()) ?? '',
      new RegExp(`claude-sonnet-4-6 · ${TOOL}.*claude-code · 144 tok`),
    );
    // Expand it: its child is the tool call.
    await row.locator('.monaco-tl-twistie').click();
    const call = pane.locator('.monaco-list-row', { hasText: 'not injected' }).first();
    await call.waitFor({ state: 'visible', timeout: 10_000 });
    assert.match((await call.textContent()) ?? '', /MCP files · not injected · \{"path":"\/etc\/motd"\}/);
    await wb.screenshot('audit-tree');

    // Tool calls only: the view's filter button (in the side bar's title, the view being alone there).
    await wb.page.locator('.action-label[aria-label="Show Only Tool Calls"]:visible').first().click();
    let rows: string[] = [];
    for (let i = 0; i < 50; i++) {
      rows = await wb.treeRows('Interceptions');
      if (rows.length === 1) break;
      await wb.page.waitForTimeout(100);
    }
    assert.equal(rows.length, 1, `rows: ${rows}`);
    assert.match(rows[0] ?? '', new RegExp(`${TOOL}.*claude-sonnet-4-6`));
    await wb.screenshot('audit-tool-calls-only');
    await wb.page.locator('.action-label[aria-label="Show All Interceptions"]:visible').first().click();

    // Selecting the interception opens the detail webview with the prompt (escaped, shown as text).
    await pane.locator('.monaco-list-row', { hasText: 'claude-sonnet-4-6' }).first().click();
    const frame = wb.page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');
    await frame.locator('h2', { hasText: 'Prompt' }).waitFor({ timeout: 20_000 });
    await frame.locator('pre', { hasText: '<b>please</b>' }).first().waitFor({ timeout: 20_000 });
    const body = (await frame.locator('body').textContent()) ?? '';
    assert.match(body, /Read \/etc\/motd for me <b>please<\/b>/);
    assert.match(body, new RegExp(interceptionId));
    assert.match(body, /Tool calls \(1\)/);
    assert.equal(await frame.locator('b').count(), 0, 'the prompt is text, not markup');
    await wb.screenshot('detail-webview');
  });

  it('a new terminal has the four variables', async () => {
    const env = await terminalEnv(wb, dir, 'signed-in');
    assert.deepEqual(Object.keys(env).sort(), ENV_VARS);
    assert.equal(env.ANTHROPIC_BASE_URL, `${tb.url}/anthropic`);
    assert.equal(env.OPENAI_BASE_URL, `${tb.url}/openai/v1`);
    assert.equal(env.ANTHROPIC_AUTH_TOKEN, alice.key);
    assert.equal(env.OPENAI_API_KEY, alice.key);
    await wb.screenshot('terminal-env');
  });

  it('sign-out removes the variables from new terminals and the data from the views', async () => {
    await wb.runCommand('AI Bridge: Sign Out');
    await wb.waitForStatus(/Sign In/);
    const env = await terminalEnv(wb, dir, 'signed-out');
    assert.deepEqual(env, {});
    const rows = await wb.treeRows('Interceptions');
    assert.ok(!rows.some((r) => r.includes('claude-sonnet-4-6')), `rows left: ${rows}`);
    await wb.screenshot('signed-out-again');
  });

  it('signs in through the URI handler (code-oss://aibridge.ai-bridge/signin), after a confirmation', async () => {
    // code-server's product is "code-oss": its URLs are code-oss://, desktop VS Code's vscode://.
    const link = `code-oss://aibridge.ai-bridge/signin?url=${encodeURIComponent(tb.url)}&key=${encodeURIComponent(alice.key)}`;
    await wb.runCommand('Developer: Open URL');
    await wb.answerInput(link);
    const dialog = wb.page.locator('.monaco-dialog-box');
    await dialog.waitFor({ state: 'visible', timeout: 15_000 });
    // VS Code first asks whether to let the extension open the link; the extension then checks the
    // key with the bridge and asks, naming the account the key belongs to.
    for (let i = 0; i < 3 && (await dialog.isVisible()); i++) {
      const text = (await dialog.textContent()) ?? '';
      await wb.screenshot(`uri-confirm-${i + 1}`);
      if (/Sign in to the AI Bridge/.test(text)) {
        assert.match(text, new RegExp(`${tb.url.replace(/\./g, '\\.')}`));
        assert.ok(text.includes(alice.user.email), `the dialog names the account: ${text}`);
        assert.ok(!text.includes(alice.key), 'the dialog shows only the key prefix');
        await wb.clickDialogButton('Sign In');
        break;
      }
      await dialog
        .locator('.monaco-button', { hasText: /^(Open|Allow|Yes)$/ })
        .first()
        .click();
      await wb.page.waitForTimeout(500);
      // The extension's question comes once the bridge has answered whose key it is.
      await dialog.waitFor({ state: 'visible', timeout: 10_000 }).catch(() => undefined);
    }
    const text = await wb.waitForStatus(/144 tok/);
    assert.match(text, /144 tok/);
    await wb.screenshot('signed-in-uri');
  });

  it('a tool call the policy denies shows "AI Bridge blocked" and is marked in the audit view', async () => {
    const put = await fetch(`${tb.url}/api/v1/tool-policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${tb.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        rules: [
          {
            id: 'no-force-push',
            tool: 'Bash',
            argumentPattern: 'git\\s+push\\b.*--force',
            action: 'deny',
            scope: 'org',
          },
        ],
      }),
    });
    assert.equal(put.status, 200);
    try {
      upstream.next({ kind: 'tool', name: 'Bash', input: { command: 'git push --force origin main' } });
      await ask(tb, alice.key);
      const text = await wb.waitForNotification(
        /AI Bridge blocked: git push --force origin main \(no-force-push\)/,
      );
      assert.match(text, /Show in Audit View/);
      await wb.screenshot('policy-blocked-notification');
      await wb.statusItem().click();
      const pane = wb.page.locator('.pane', {
        has: wb.page.locator('.pane-header', { hasText: 'Interceptions' }),
      });
      const row = pane.locator('.monaco-list-row', { hasText: 'Bash' }).first();
      await row.waitFor({ state: 'visible', timeout: 20_000 });
      await row.locator('.monaco-tl-twistie').click();
      await pane
        .locator('.monaco-list-row', { hasText: 'BLOCKED (no-force-push)' })
        .first()
        .waitFor({ timeout: 10_000 });
      await wb.screenshot('policy-blocked-audit');
    } finally {
      await fetch(`${tb.url}/api/v1/tool-policy`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${tb.adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ rules: [] }),
      });
    }
  });

  it('a turn that breaks the session’s prompt cache turns the status bar to a warning naming the cause', async () => {
    const turn = async (
      tools: string[],
      usage: { cache_read_input_tokens: number; cache_creation_input_tokens: number },
    ): Promise<void> => {
      upstream.next({ kind: 'text', text: 'ok', usage: { input_tokens: 3, output_tokens: 20, ...usage } });
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'x-api-key': alice.key,
          'anthropic-version': '2023-06-01',
          'content-type': 'application/json',
          'user-agent': 'claude-cli/2.1.0 (external, cli)',
          'x-claude-code-session-id': 'e2e-cache-session',
        },
        body: JSON.stringify({
          model: 'claude-sonnet-4-6',
          max_tokens: 100,
          stream: true,
          tools: tools.map((name) => ({ name, description: name, input_schema: { type: 'object' } })),
          system: [{ type: 'text', text: 'You are a coding agent.', cache_control: { type: 'ephemeral' } }],
          messages: [
            {
              role: 'user',
              content: [{ type: 'text', text: 'go on', cache_control: { type: 'ephemeral' } }],
            },
          ],
        }),
      });
      await res.text();
      assert.equal(res.status, 200);
    };
    await turn(['Read'], { cache_read_input_tokens: 0, cache_creation_input_tokens: 60_000 });
    await turn(['Read'], { cache_read_input_tokens: 60_000, cache_creation_input_tokens: 200 });
    await turn(['Read', 'Write'], { cache_read_input_tokens: 0, cache_creation_input_tokens: 60_400 });
    const text = await wb.waitForStatus(/cache: the tool list changed/, 20_000);
    assert.match(text, /cache: the tool list changed/);
    await wb.screenshot('cache-break-status');
  });

  it('reports its activation time', async () => {
    // The earlier tests' toasts (a blocked call, the sign-in, a check still running) fill what VS
    // Code shows: the diagnostics toast would wait hidden behind them.
    await wb.clearNotifications();
    await wb.runCommand('AI Bridge: Show Diagnostics');
    const text = await wb.waitForNotification(/activation: [\d.]+ ms/);
    const ms = Number(/activation: ([\d.]+) ms/.exec(text)?.[1]);
    console.log(`      activation took ${ms} ms`);
    assert.ok(ms > 0 && ms < 2000, `activation ${ms} ms`);
    await wb.screenshot('diagnostics');
  });
});
