import assert from 'node:assert/strict';
import path from 'node:path';
import { CODEX, codexHome, runCodexExec } from '../helpers/agent-cli';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { OPENAI_TEXT, OPENAI_UPSTREAM_KEY, OPENAI_USAGE, OpenAIMock } from '../helpers/openai-mock';
import { run } from '../helpers/run';

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

  it('stops at once with the message when the budget is spent, rather than wait for its reset', async () => {
    const dev = await tb.addUser('codex-budget@example.com');
    const home = await codexHome(`${tb.url}/openai/v1`);
    await runCodexExec({ home, key: dev.key }, 'Spend a little');
    const put = await tb.api('PUT', '/api/v1/budgets', tb.adminKey, {
      scope: 'user',
      subject: 'codex-budget@example.com',
      period: 'day',
      limitUsd: 0.000001,
      action: 'block',
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const started = Date.now();
    // A daily budget's refusal used to carry retry-after: the seconds to midnight, which codex obeyed.
    const res = await run(
      process.execPath,
      [CODEX, 'exec', '--skip-git-repo-check', 'Spend more'],
      {
        PATH: process.env.PATH,
        HOME: home,
        TMPDIR: home,
        CODEX_HOME: path.join(home, '.codex'),
        OPENAI_API_KEY: dev.key,
        CI: '1',
      },
      home,
      60_000,
    );
    const seconds = (Date.now() - started) / 1000;
    assert.notEqual(res.code, 0, `codex should fail: ${res.stdout}`);
    assert.ok(seconds < 30, `codex gave up after ${seconds.toFixed(1)} s`);
    // Codex shows the status, not the body; the body names the budget (spend.test.ts).
    assert.match(`${res.stdout}\n${res.stderr}`, /429/);
  });
});
