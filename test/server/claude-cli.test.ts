import assert from 'node:assert/strict';
import { CLAUDE, claudeEnv, runClaude } from '../helpers/agent-cli';
import { AnthropicMock, MOCK_TEXT } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { run } from '../helpers/run';

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
    const res = await runClaude({ bridgeUrl: tb.url, key: dev.key, home }, ['-p', 'Say hello to the bridge']);
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

  it('gives up at once on a bad key (x-should-retry: false), not after minutes of silent retries', async () => {
    const home = await tempDir('aibridge-claude-home-');
    const before = mock.messageRequests().length;
    const started = Date.now();
    const res = await run(
      CLAUDE,
      ['-p', 'Say hello to the bridge'],
      claudeEnv({ bridgeUrl: tb.url, key: 'aibr_not-a-key', home }),
      home,
      60_000,
    );
    const seconds = (Date.now() - started) / 1000;
    assert.notEqual(res.code, 0, res.stdout);
    assert.ok(seconds < 30, `claude gave up after ${seconds.toFixed(1)} s`);
    assert.equal(mock.messageRequests().length, before, 'nothing reached the provider');
  });
  it('given the bridge URL without /anthropic, prints the base URL to give (a 400 it shows, not a 404 it reads as a bad model)', async () => {
    const dev = await tb.addUser('claude-base@example.com');
    const home = await tempDir('aibridge-claude-home-');
    const env = { ...claudeEnv({ bridgeUrl: tb.url, key: dev.key, home }), ANTHROPIC_BASE_URL: tb.url };
    const res = await run(CLAUDE, ['-p', 'Say hello to the bridge'], env, home, 60_000);
    assert.notEqual(res.code, 0, res.stdout);
    assert.match(
      `${res.stdout}\n${res.stderr}`,
      /give the client the base URL <bridge URL>\/anthropic, not the bridge URL alone/,
    );
  });
});
