import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser } from 'playwright-core';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { everythingStdio } from '../helpers/mcp-servers';
import {
  CODE_SERVER_NEXT_BIN,
  type CodeServer,
  installExtension,
  startCodeServer,
  writeSettings,
} from './code-server';
import { launchBrowser, Workbench } from './workbench';

const run = promisify(execFile);

/** Screenshots of every step, kept after the run (CI uploads test-artifacts/). */
const ARTIFACTS = path.resolve('test-artifacts/e2e-next');
const VSIX = path.resolve('ai-bridge.vsix');
const VSCE = path.resolve('node_modules/.bin/vsce');
const PROMPT = 'What is the weather in Paris?';
const TOOL = { name: 'get_weather', input: { city: 'Paris' } };
const SAID = 'Let me look that up.';

interface ProbeResult {
  models?: { id: string; vendor: string }[];
  text?: string;
  toolCalls?: { callId: string; name: string; input: unknown }[];
  error?: string;
}

/**
 * A third-party extension, as any extension would use the bridge's models: it picks them with
 * `vscode.lm.selectChatModels({ vendor: 'aibridge' })`, sends one request offering a tool, and writes
 * the parts that arrived to `out` (the test reads it). It polls because the models appear only once
 * AI Bridge has signed in, which it does by itself from AIBRIDGE_URL and AIBRIDGE_KEY.
 */
function probeSource(out: string): string {
  return `const vscode = require('vscode');
const fs = require('fs');
function write(result) {
  fs.writeFileSync(${JSON.stringify(`${out}.tmp`)}, JSON.stringify(result));
  fs.renameSync(${JSON.stringify(`${out}.tmp`)}, ${JSON.stringify(out)});
}
exports.activate = async function () {
  try {
    let models = [];
    const deadline = Date.now() + 90000;
    while (models.length === 0 && Date.now() < deadline) {
      models = await vscode.lm.selectChatModels({ vendor: 'aibridge' });
      if (models.length === 0) await new Promise((r) => setTimeout(r, 500));
    }
    if (models.length === 0) throw new Error('no language model of vendor aibridge within 90s');
    const model = models[0];
    const response = await model.sendRequest(
      [vscode.LanguageModelChatMessage.User(${JSON.stringify(PROMPT)})],
      {
        justification: 'end-to-end test',
        tools: [{
          name: ${JSON.stringify(TOOL.name)},
          description: 'The weather in a city',
          inputSchema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        }],
      },
      new vscode.CancellationTokenSource().token,
    );
    let text = '';
    const toolCalls = [];
    for await (const part of response.stream) {
      if (part instanceof vscode.LanguageModelTextPart) text += part.value;
      else if (part instanceof vscode.LanguageModelToolCallPart)
        toolCalls.push({ callId: part.callId, name: part.name, input: part.input });
    }
    write({ models: models.map((m) => ({ id: m.id, vendor: m.vendor })), text, toolCalls });
  } catch (e) {
    write({ error: String((e && e.stack) || e) });
  }
};
exports.deactivate = function () {};
`;
}

/** Packages the probe extension with vsce, the way any extension is shipped. */
async function buildProbe(dir: string, out: string): Promise<string> {
  const src = path.join(dir, 'probe');
  await fs.mkdir(src, { recursive: true });
  await fs.writeFile(
    path.join(src, 'package.json'),
    JSON.stringify(
      {
        name: 'lm-probe',
        displayName: 'LM probe',
        description: 'Uses the AI Bridge models from another extension (end-to-end test)',
        publisher: 'aibridge-e2e',
        version: '0.0.1',
        engines: { vscode: '^1.104.0' },
        activationEvents: ['onStartupFinished'],
        main: './extension.js',
      },
      null,
      2,
    ),
  );
  await fs.writeFile(path.join(src, 'extension.js'), probeSource(out));
  await fs.writeFile(path.join(src, 'README.md'), '# LM probe\n\nAn end-to-end test fixture.\n');
  const vsix = path.join(dir, 'lm-probe.vsix');
  await run(
    VSCE,
    ['package', '--no-dependencies', '--skip-license', '--allow-missing-repository', '--out', vsix],
    { cwd: src, timeout: 120_000 },
  );
  return vsix;
}

async function readProbe(file: string, timeoutMs: number): Promise<ProbeResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return JSON.parse(await fs.readFile(file, 'utf8')) as ProbeResult;
    } catch {
      if (Date.now() > deadline) throw new Error(`the probe extension did not write ${file}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

describe('VS Code >= 1.104 end to end: the chat model provider and the MCP server definition provider', function () {
  this.timeout(240_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let dev: { key: string; user: { id: string; email: string } };
  let dir: string;
  let probeOut: string;
  let cs: CodeServer;
  let browser: Browser;
  let wb: Workbench;

  before(async function () {
    this.timeout(300_000);
    await fs.rm(ARTIFACTS, { recursive: true, force: true });
    await fs.mkdir(ARTIFACTS, { recursive: true });
    await run('npm', ['run', '--silent', 'package'], { timeout: 180_000 });
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url, { AIBRIDGE_MCP_API_STDIO: 'true' });
    // The gateway is offered once the bridge has an MCP server: then the extension lists it.
    const put = await tb.api('PUT', '/api/v1/mcp/servers/everything', tb.adminKey, everythingStdio());
    assert.equal(put.status, 200, JSON.stringify(put.body));
    dev = await tb.addUser('chat-e2e@example.com');
    dir = await tempDir('aibridge-e2e-next-');
    probeOut = path.join(dir, 'probe-result.json');
    const workspace = path.join(dir, 'workspace');
    await fs.mkdir(workspace);
    await writeSettings(dir, {
      'workbench.startupEditor': 'none',
      'workbench.tips.enabled': false,
      'extensions.autoCheckUpdates': false,
      'extensions.autoUpdate': false,
      'telemetry.telemetryLevel': 'off',
    });
    assert.match(await installExtension(dir, VSIX, CODE_SERVER_NEXT_BIN), /successfully installed/);
    const probe = await buildProbe(dir, probeOut);
    assert.match(await installExtension(dir, probe, CODE_SERVER_NEXT_BIN), /successfully installed/);
    // The bridge's first answer: a sentence, then a call of the offered tool.
    upstream.next({ kind: 'tool', name: TOOL.name, input: TOOL.input, text: SAID });
    cs = await startCodeServer(
      dir,
      workspace,
      { AIBRIDGE_URL: tb.url, AIBRIDGE_KEY: dev.key },
      CODE_SERVER_NEXT_BIN,
    );
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

  it('another extension gets the bridge models with selectChatModels; text and the tool call arrive; recorded as the user, client vscode-chat', async () => {
    await wb.waitForStatus(/tok/, 60_000);
    await wb.screenshot('signed-in-from-env');
    const result = await readProbe(probeOut, 120_000);
    assert.equal(result.error, undefined, result.error);
    assert.ok(result.models && result.models.length > 0);
    assert.ok(
      result.models.every((m) => m.vendor === 'aibridge'),
      JSON.stringify(result.models),
    );
    assert.equal(result.text, SAID);
    assert.equal(result.toolCalls?.length, 1, JSON.stringify(result.toolCalls));
    assert.equal(result.toolCalls[0]!.name, TOOL.name);
    assert.deepEqual(result.toolCalls[0]!.input, TOOL.input);
    const sent = JSON.parse(String(upstream.messageRequests().at(-1)!.body)) as {
      model: string;
      tools?: { name: string }[];
    };
    assert.equal(sent.model, result.models[0]!.id);
    // The offered tool reaches the provider (the bridge adds its MCP gateway's tools after it).
    assert.equal(sent.tools?.[0]?.name, TOOL.name, JSON.stringify(sent.tools?.map((t) => t.name)));
    const [rec] = await tb.interceptions(1, dev.key);
    assert.equal(rec!.userEmail, 'chat-e2e@example.com');
    assert.equal(rec!.client, 'vscode-chat');
    assert.equal(rec!.prompt, PROMPT);
    assert.equal(rec!.status, 'ok');
    await wb.screenshot('chat-request-done');
  });

  it('"MCP: List Servers" shows the bridge\'s gateway as "AI Bridge", running (connected with the key)', async () => {
    await wb.runCommand('MCP: List Servers');
    const row = wb.page.locator('.quick-input-widget .monaco-list-row', { hasText: 'AI Bridge' }).first();
    await row.waitFor({ state: 'visible', timeout: 30_000 });
    // VS Code started the server: it connected to <bridge>/mcp with the Authorization header the
    // provider adds when resolving the definition.
    await wb.page
      .locator('.quick-input-widget .monaco-list-row', { hasText: /AI Bridge\s*Running/ })
      .first()
      .waitFor({ state: 'visible', timeout: 30_000 });
    await wb.screenshot('mcp-list-servers');
    await wb.closeQuickInput();
  });
});
