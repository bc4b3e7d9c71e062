import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { computeTerminalEnv } from '../../extension/terminal/env';
import { AnthropicMock, MOCK_TEXT } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { OpenAIMock } from '../helpers/openai-mock';
import { run } from '../helpers/run';

const COPILOT = path.resolve('node_modules/.bin/copilot');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The one session Copilot CLI kept in this home: the id `copilot --resume` takes. */
async function onlySession(home: string): Promise<string> {
  const ids = (await readdir(path.join(home, '.copilot', 'session-state'))).filter((n) => UUID.test(n));
  assert.equal(ids.length, 1, `sessions: ${ids.join(', ')}`);
  return ids[0]!;
}

/** The environment the extension gives a terminal for Copilot CLI, in a throwaway home. */
function copilotEnv(
  home: string,
  baseUrl: string,
  type: string,
  key: string,
  model: string,
): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: home,
    TMPDIR: home,
    COPILOT_PROVIDER_BASE_URL: baseUrl,
    COPILOT_PROVIDER_TYPE: type,
    COPILOT_PROVIDER_API_KEY: key,
    COPILOT_MODEL: model,
    COPILOT_OFFLINE: 'true',
    CI: '1',
  };
}

describe('the real Copilot CLI through the bridge', function () {
  this.timeout(120_000);

  describe('with the Anthropic provider', () => {
    let mock: AnthropicMock;
    let tb: TestBridge;
    before(async () => {
      mock = await new AnthropicMock().start();
      tb = await startBridge(mock.url);
    });
    after(async () => {
      await tb.close();
      await mock.stop();
    });

    it('is recorded as copilot-cli with its session and the typed prompt', async () => {
      const dev = await tb.addUser('copilot-user@example.com', { team: 'agents' });
      const home = await tempDir('aibridge-copilot-home-');
      const env = copilotEnv(home, `${tb.url}/anthropic`, 'anthropic', dev.key, 'claude-sonnet-4-5');
      const res = await run(COPILOT, ['-p', 'Say hello to the bridge'], env, home);
      assert.equal(res.code, 0, `copilot failed: ${res.stderr}\n${res.stdout}`);
      assert.ok(res.stdout.includes(MOCK_TEXT), res.stdout);
      const session = await onlySession(home);

      const recs = await tb.interceptions(1, dev.key);
      assert.equal(recs.length, 1);
      const rec = recs[0]!;
      assert.equal(rec.client, 'copilot-cli');
      assert.equal(rec.sessionId, session);
      assert.equal(rec.prompt, 'Say hello to the bridge');
      assert.equal(rec.userEmail, 'copilot-user@example.com');
      assert.equal(rec.status, 'ok');
      // The bridge's own headers never reach the provider.
      assert.ok(mock.messageRequests().every((r) => r.headers['x-aibridge-client'] === undefined));
    });

    it("typed in a terminal with the extension's default env: named by COPILOT_PROVIDER_HEADERS", async () => {
      const dev = await tb.addUser('copilot-hdr@example.com', { team: 'agents' });
      const home = await tempDir('aibridge-copilot-home-');
      const terminal = computeTerminalEnv(undefined, { url: tb.url, key: dev.key });
      assert.deepEqual(terminal.problems, []);
      const env: NodeJS.ProcessEnv = {
        PATH: process.env.PATH,
        HOME: home,
        TMPDIR: home,
        CI: '1',
        COPILOT_OFFLINE: 'true',
        ...Object.fromEntries(terminal.vars),
      };
      const before = mock.messageRequests().length;
      const res = await run(COPILOT, ['-p', 'What is in this folder?'], env, home);
      assert.equal(res.code, 0, `copilot failed: ${res.stderr}\n${res.stdout}`);
      const recs = await tb.interceptions(1, dev.key);
      assert.equal(recs[0]!.client, 'copilot-cli');
      assert.equal(recs[0]!.prompt, 'What is in this folder?');
      assert.equal(recs[0]!.sessionId, await onlySession(home));
      const sent = mock.messageRequests().slice(before);
      assert.ok(sent.length >= 1 && sent.every((r) => r.headers['x-aibridge-client'] === undefined));
    });
  });

  describe('with the OpenAI provider', () => {
    let mock: OpenAIMock;
    let tb: TestBridge;
    before(async () => {
      mock = await new OpenAIMock().start();
      tb = await startBridge('http://127.0.0.1:9', { AIBRIDGE_OPENAI_BASE_URL: mock.url });
    });
    after(async () => {
      await tb.close();
      await mock.stop();
    });

    it('is recorded as copilot-cli with its session and the typed prompt', async () => {
      const dev = await tb.addUser('copilot-openai@example.com', { team: 'agents' });
      const home = await tempDir('aibridge-copilot-home-');
      const env = copilotEnv(home, `${tb.url}/openai/v1`, 'openai', dev.key, 'gpt-4.1');
      const res = await run(COPILOT, ['-p', 'Say hello to the bridge'], env, home);
      assert.equal(res.code, 0, `copilot failed: ${res.stderr}\n${res.stdout}`);
      const session = await onlySession(home);
      const recs = await tb.interceptions(1, dev.key);
      assert.equal(recs[0]!.client, 'copilot-cli');
      assert.equal(recs[0]!.sessionId, session);
      assert.equal(recs[0]!.prompt, 'Say hello to the bridge');
      assert.equal(recs[0]!.usage.cacheRead, 100);
    });
  });
});
