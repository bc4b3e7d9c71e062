import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { prepareAgents } from '../../extension/agents/prepare-agents';
import { BridgeClient } from '../../extension/api/bridge-client';
import { computeTerminalEnv, withOwnCredential } from '../../extension/terminal/env';
import { geminiInstance } from '../../shared/gemini-instance';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { GEMINI_UPSTREAM_KEY, type GeminiMock, startGeminiMock } from '../helpers/gemini-mock';
import { run } from '../helpers/run';

/** The real Gemini CLI's entry point, run with this node so the test does not depend on `PATH`. */
const GEMINI = path.join(
  path.dirname(createRequire(import.meta.url).resolve('@google/gemini-cli/package.json')),
  'bundle',
  'gemini.js',
);

/**
 * What the extension does at sign-in, against a real bridge: `GET /api/v1/me` with its own client,
 * the terminal variables from that answer, the agents' files prepared in a fresh home.
 */
async function signInAsExtension(tb: TestBridge, key: string, home: string, folder: string, byok = false) {
  const me = await new BridgeClient(tb.url, key).me();
  const computed = computeTerminalEnv(undefined, { url: tb.url, key }, me.providers);
  const env = byok ? withOwnCredential(computed, { url: tb.url, key }) : computed;
  const report = await prepareAgents({
    url: tb.url,
    trustedFolders: [folder],
    env: { HOME: home },
    mcpGateway: false,
    byok,
    gemini: geminiInstance(me.providers) !== undefined,
  });
  return { me, env: Object.fromEntries(env.vars), report };
}

describe('extension: Gemini CLI set up from what the bridge serves (the real gemini through the bridge)', function () {
  this.timeout(120_000);
  let mock: GeminiMock;
  let tb: TestBridge;

  before(async () => {
    mock = await startGeminiMock();
    const dir = await tempDir('aibridge-gemext-');
    const file = path.join(dir, 'providers.json');
    // Not the built-in name: the terminal must carry the instance's own route prefix.
    await fs.writeFile(
      file,
      JSON.stringify({
        providers: { 'google-ai': { type: 'gemini', baseUrl: mock.origin, apiKey: GEMINI_UPSTREAM_KEY } },
        byok: { teams: ['own-keys'] },
      }),
    );
    tb = await startBridge('http://127.0.0.1:9', { AIBRIDGE_PROVIDERS_FILE: file });
  });

  after(async () => {
    await tb?.close();
    await mock?.stop();
  });

  it('/api/v1/me names the instances (name and type only); gemini -p works with exactly the env and files the extension writes', async () => {
    const dev = await tb.addUser('gemini-ext@example.com');
    const home = await tempDir('aibridge-gemext-home-');
    const folder = path.join(home, 'project');
    await fs.mkdir(folder);
    const { me, env, report } = await signInAsExtension(tb, dev.key, home, folder);

    assert.deepEqual(
      me.providers?.find((p) => p.name === 'google-ai'),
      { name: 'google-ai', type: 'gemini' },
      'no base URL or key: only what a member may know',
    );
    for (const p of me.providers ?? []) assert.deepEqual(Object.keys(p).sort(), ['name', 'type']);
    // The built-in instances from the environment, then the providers file's, in that order.
    assert.deepEqual(
      me.providers?.map((p) => p.name),
      ['anthropic', 'openai', 'google-ai'],
    );
    assert.equal(env.GOOGLE_GEMINI_BASE_URL, `${tb.url}/google-ai`);
    assert.equal(env.GEMINI_API_KEY, dev.key);
    const settingsFile = path.join(home, '.gemini', 'settings.json');
    assert.ok(report.changed.includes(settingsFile), report.changed.join(', '));
    // Headless gemini refuses an untrusted folder; the workspace folder VS Code trusts is trusted.
    assert.ok(report.changed.includes(path.join(home, '.gemini', 'trustedFolders.json')));
    assert.deepEqual(report.problems, []);

    const res = await run(
      process.execPath,
      [GEMINI, '-p', 'Say hello', '-m', 'gemini-2.5-flash'],
      { PATH: process.env.PATH, HOME: home, TMPDIR: home, CI: '1', NO_COLOR: '1', ...env },
      folder,
    );
    assert.equal(res.code, 0, `gemini failed: ${res.stderr}\n${res.stdout}`);
    assert.equal(res.stdout.trim(), 'BonBonjour');
    assert.equal(mock.seen.length, 1, mock.seen.map((s) => s.url).join(', '));
    assert.equal(
      mock.seen[0]!.headers['x-goog-api-key'],
      GEMINI_UPSTREAM_KEY,
      'the organisation’s key upstream',
    );
    const [rec] = await tb.interceptions(1, dev.key);
    assert.ok(rec);
    assert.equal(rec.provider, 'google-ai');
    assert.equal(rec.client, 'gemini-cli');
    assert.equal(rec.model, 'gemini-2.5-flash');
    assert.equal(rec.status, 'ok');
    assert.equal(rec.userId, dev.user.id);
  });

  it('bring your own key: gemini sends the user’s own GEMINI_API_KEY upstream and the bridge key as X-AIBridge-Key', async () => {
    const dev = await tb.addUser('gemini-byok@example.com', { team: 'own-keys' });
    const home = await tempDir('aibridge-gemext-home-');
    const { env, report } = await signInAsExtension(tb, dev.key, home, home, true);
    assert.deepEqual(report.problems, []);
    assert.equal(env.GEMINI_API_KEY, undefined, 'the terminal keeps the user’s own');
    const before = mock.seen.length;
    const res = await run(
      process.execPath,
      [GEMINI, '-p', 'Say hello', '-m', 'gemini-2.5-flash'],
      // The user's own Google key, from their shell (the mock accepts this one key only).
      {
        PATH: process.env.PATH,
        HOME: home,
        TMPDIR: home,
        CI: '1',
        NO_COLOR: '1',
        GEMINI_API_KEY: GEMINI_UPSTREAM_KEY,
        ...env,
      },
      home,
    );
    assert.equal(res.code, 0, `gemini failed: ${res.stderr}\n${res.stdout}`);
    assert.equal(mock.seen.length, before + 1);
    assert.equal(mock.seen[before]!.headers['x-goog-api-key'], GEMINI_UPSTREAM_KEY);
    assert.ok(
      !JSON.stringify(mock.seen[before]!.headers).includes(dev.key),
      'the bridge key stays at the bridge',
    );
    const rec = (await tb.interceptions(1, dev.key)).find((r) => r.userId === dev.user.id);
    assert.ok(rec);
    // The bridge knew the user (X-AIBridge-Key from GEMINI_CLI_CUSTOM_HEADERS) and the key was theirs.
    assert.equal(rec.billedTo, 'user');
    assert.equal(rec.provider, 'google-ai');
  });
});

describe('extension: a bridge without Gemini leaves Gemini CLI alone', function () {
  this.timeout(30_000);
  let tb: TestBridge;

  before(async () => {
    tb = await startBridge('http://127.0.0.1:9');
  });

  after(async () => {
    await tb?.close();
  });

  it('no GOOGLE_GEMINI_BASE_URL or GEMINI_API_KEY, no ~/.gemini/settings.json', async () => {
    const dev = await tb.addUser('no-gemini@example.com');
    const home = await tempDir('aibridge-gemext-home-');
    const { me, env, report } = await signInAsExtension(tb, dev.key, home, home);
    assert.ok(
      (me.providers ?? []).some((p) => p.type === 'anthropic'),
      JSON.stringify(me.providers),
    );
    assert.equal(geminiInstance(me.providers), undefined);
    assert.equal(env.GOOGLE_GEMINI_BASE_URL, undefined);
    assert.equal(env.GEMINI_API_KEY, undefined);
    assert.equal(env.ANTHROPIC_BASE_URL, `${tb.url}/anthropic`);
    assert.deepEqual(report.problems, []);
    await assert.rejects(fs.stat(path.join(home, '.gemini')), { code: 'ENOENT' });
  });
});
