import assert from 'node:assert/strict';
import { codexHome, runCodexExec } from '../helpers/agent-cli';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { OPENAI_TEXT, OPENAI_UPSTREAM_KEY, OPENAI_USAGE, OpenAIMock } from '../helpers/openai-mock';

describe('the real codex CLI through the bridge', function () {
  this.timeout(120_000);
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    tb = await startBridge(anthropic.url, { AIBRIDGE_OPENAI_BASE_URL: openai.url });
  });
  after(async () => {
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  it('prints the upstream answer, and the interception names the user, client and session', async () => {
    const dev = await tb.addUser('codex-user@example.com', { team: 'agents' });
    const home = await codexHome(`${tb.url}/openai/v1`);
    const res = await runCodexExec({ home, key: dev.key }, 'Say hello to the bridge');
    assert.ok(res.stdout.includes(OPENAI_TEXT), `codex output: ${res.stdout}\n${res.stderr}`);

    const sent = openai.modelRequests();
    assert.ok(sent.length >= 1, 'codex reached the upstream through the bridge');
    assert.equal(sent[0]!.headers.authorization, `Bearer ${OPENAI_UPSTREAM_KEY}`);
    const sessionHeader = sent[0]!.headers['session-id'];
    assert.ok(typeof sessionHeader === 'string' && sessionHeader.length > 0, 'codex sent a session-id');

    const recs = await tb.interceptions(sent.length, dev.key);
    const mine = recs.find((r) => r.prompt?.includes('Say hello to the bridge'));
    assert.ok(mine, `no interception with the prompt: ${JSON.stringify(recs.map((r) => r.prompt))}`);
    assert.equal(mine.api, 'responses');
    assert.equal(mine.provider, 'openai');
    assert.equal(mine.client, 'codex');
    assert.equal(mine.sessionId, sessionHeader);
    assert.equal(mine.userEmail, 'codex-user@example.com');
    assert.equal(mine.status, 'ok');
    assert.equal(mine.streamed, true);
    assert.equal(mine.usage.input, OPENAI_USAGE.input - OPENAI_USAGE.cached);
    assert.equal(mine.usage.cacheRead, OPENAI_USAGE.cached);
    assert.equal(mine.usage.reasoning, OPENAI_USAGE.reasoning);
  });
});
