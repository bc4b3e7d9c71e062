import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { AnthropicMock, MOCK_TEXT } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { run } from '../helpers/run';

const require = createRequire(import.meta.url);
const CLAUDE = path.join(
  path.dirname(require.resolve('@anthropic-ai/claude-code/package.json')),
  'bin',
  'claude.exe',
);

describe('the real claude CLI through the bridge', function () {
  this.timeout(120_000);
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

  it('prints the upstream answer, and the interception names the user, client and session', async () => {
    const dev = await tb.addUser('claude-user@example.com', { team: 'agents' });
    const home = await tempDir('aibridge-claude-home-');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: home,
      TMPDIR: home,
      ANTHROPIC_BASE_URL: `${tb.url}/anthropic`,
      ANTHROPIC_AUTH_TOKEN: dev.key,
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      DISABLE_AUTOUPDATER: '1',
      CI: '1',
    };
    const res = await run(CLAUDE, ['-p', 'Say hello to the bridge'], env, home);
    assert.equal(res.code, 0, `claude failed: ${res.stderr}\n${res.stdout}`);
    assert.equal(res.stdout.trim(), MOCK_TEXT);

    const sent = mock.messageRequests().filter((r) => r.headers['user-agent']?.startsWith('claude-cli/'));
    assert.ok(sent.length >= 1, 'claude reached the upstream through the bridge');
    const sessionHeader = sent[0]!.headers['x-claude-code-session-id'];
    assert.ok(typeof sessionHeader === 'string' && sessionHeader.length > 0);

    const recs = await tb.interceptions(sent.length, dev.key);
    const mine = recs.find((r) => r.prompt === 'Say hello to the bridge');
    assert.ok(mine, `no interception with the prompt: ${JSON.stringify(recs.map((r) => r.prompt))}`);
    assert.equal(mine.client, 'claude-code');
    assert.equal(mine.sessionId, sessionHeader);
    assert.equal(mine.userEmail, 'claude-user@example.com');
    assert.equal(mine.team, 'agents');
    assert.equal(mine.status, 'ok');
    assert.equal(mine.streamed, true);
    assert.equal(mine.usage.input, 25);
    assert.equal(mine.usage.cacheRead, 100);
    assert.ok(recs.every((r) => r.userId === dev.user.id && r.client === 'claude-code'));
  });
});
