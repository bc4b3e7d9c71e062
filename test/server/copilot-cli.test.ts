import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { computeTerminalEnv } from '../../extension/terminal/env';
import { AnthropicMock, MOCK_TEXT } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { OpenAIMock } from '../helpers/openai-mock';
import { run } from '../helpers/run';
import { ToolModelMock } from '../helpers/tool-model-mock';

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

  describe('a turn with a tool call, configured by hand (no x-aibridge-client)', () => {
    let mock: ToolModelMock;
    let tb: TestBridge;
    before(async () => {
      mock = await new ToolModelMock().start();
      tb = await startBridge(mock.url, { AIBRIDGE_OPENAI_BASE_URL: `${mock.url}/v1` });
      // Runs Copilot's shell tool once, then answers with what it printed.
      mock.brain = (v) =>
        v.results.length > 0
          ? { text: `Tool said: ${v.results.map((r) => r.text).join(' | ')}` }
          : {
              text: 'Running.',
              calls: [
                {
                  name: 'bash',
                  input: {
                    command: 'echo hi-from-tool',
                    description: 'echo',
                    mode: 'sync',
                    initial_wait: 10,
                  },
                },
              ],
            };
    });
    after(async () => {
      await tb.close();
      await mock.stop();
    });

    it("records the turn sending the tool's result as copilot-cli in the same session, not as the SDK", async () => {
      const dev = await tb.addUser('copilot-tools@example.com');
      const home = await tempDir('aibridge-copilot-home-');
      const env = copilotEnv(home, `${tb.url}/openai/v1`, 'openai', dev.key, 'gpt-5-codex');
      const res = await run(COPILOT, ['-p', 'Echo something', '--allow-all-tools'], env, home);
      assert.equal(res.code, 0, `copilot failed: ${res.stderr}\n${res.stdout}`);
      assert.match(res.stdout, /Tool said: hi-from-tool/);
      const session = await onlySession(home);
      const recs = await tb.interceptions(2, dev.key);
      assert.equal(recs.length, 2);
      const [answer, call] = recs as [(typeof recs)[0], (typeof recs)[0]];
      assert.deepEqual(
        call.toolCalls.map((c) => c.name),
        ['bash'],
      );
      assert.equal(answer.toolResults?.length, 1);
      for (const rec of recs) {
        assert.equal(rec.client, 'copilot-cli', `seq ${rec.seq}`);
        assert.equal(rec.sessionId, session, `seq ${rec.seq}`);
        assert.equal(rec.prompt, 'Echo something');
      }
    });
  });
});
