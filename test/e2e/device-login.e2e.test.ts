import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import type { Browser, Page } from 'playwright-core';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { tempDirSync } from '../helpers/temp-dirs';
import { launchChromium, watchViolations } from './browser';

const BIN = path.resolve('dist/aibridge.cjs');
const ARTIFACTS = path.resolve('test-artifacts', 'device-login');

interface Run {
  child: ChildProcess;
  out(): string;
  err(): string;
  done: Promise<number>;
}

/**
 * `aibridge login` (the built CLI, as a child process) approved in Chromium by a user signed in to
 * the admin page with a key; the key it stored serves a request. Needs `npm run build` first.
 */
describe('aibridge login, approved in Chromium (e2e)', function () {
  this.timeout(120_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let browser: Browser;
  let page: Page;
  let home = '';
  let memberKey = '';
  const violations: string[] = [];

  function login(name: string): Run {
    const child = spawn(process.execPath, [BIN, 'login', '--url', tb.url, '--name', name], {
      env: { PATH: process.env.PATH ?? '', HOME: home, XDG_CONFIG_HOME: path.join(home, 'xdg') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    return {
      child,
      out: () => stdout,
      err: () => stderr,
      done: new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1))),
    };
  }

  async function printedUrl(run: Run): Promise<string> {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const m = /open (\S+\/device\?user_code=[A-Z]{4}-[A-Z]{4})/.exec(run.out());
      if (m) return m[1]!;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no verification URL printed: ${run.out()} ${run.err()}`);
  }

  before(async () => {
    assert.ok(fs.existsSync(BIN), 'run `npm run build` first');
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    home = tempDirSync('aibridge-device-e2e-');
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url);
    memberKey = (await tb.addUser('headless@example.com', { team: 'platform' })).key;
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
    watchViolations(page, violations);
  });
  after(async () => {
    await browser?.close();
    await tb?.close();
    await upstream?.stop();
  });

  it('signs the machine in: code approved in the browser, key stored 0600, key serves a request', async () => {
    const run = login('build box');
    const url = await printedUrl(run);

    // Not signed in yet: the page says so and offers the admin page.
    await page.goto(url);
    await page.waitForSelector('#sign-in:not([hidden])');
    await page.goto(`${tb.url}/admin`);
    await page.fill('input[name=key]', memberKey);
    await page.click('button[type=submit]');
    await page.waitForSelector('.who');

    const res = await page.goto(url);
    assert.match(res?.headers()['content-security-policy'] ?? '', /script-src 'self'/);
    await page.waitForSelector('#confirm:not([hidden])');
    assert.equal(await page.textContent('#device-name'), 'build box');
    assert.equal(await page.inputValue('#user-code'), new URL(url).searchParams.get('user_code'));
    await page.screenshot({ path: path.join(ARTIFACTS, 'confirm.png') });
    await page.click('#approve');
    await page.waitForSelector('#result:has-text("Approved")');

    assert.equal(await run.done, 0, run.err());
    const file = path.join(home, 'xdg', 'aibridge', 'credentials.json');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const { key } = JSON.parse(fs.readFileSync(file, 'utf8')) as { key: string };
    assert.match(key, /^aib_/);
    assert.notEqual(key, memberKey);
    const client = new Anthropic({
      authToken: key,
      apiKey: null,
      baseURL: `${tb.url}/anthropic`,
      maxRetries: 0,
    });
    const msg = await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'hello from a headless box' }],
    });
    assert.equal(msg.type, 'message');
    assert.deepEqual(violations, []);
  });

  it('a denial in the browser ends aibridge login with access_denied', async () => {
    const run = login('someone else');
    await page.goto(await printedUrl(run));
    await page.waitForSelector('#confirm:not([hidden])');
    await page.click('#deny');
    await page.waitForSelector('#result:has-text("Denied")');
    assert.equal(await run.done, 2);
    assert.match(run.err(), /access_denied/);
    assert.deepEqual(violations, []);
  });
});
