import assert from 'node:assert/strict';
import { runClaude } from '../helpers/agent-cli';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { ToolModelMock } from '../helpers/tool-model-mock';

describe('the real claude CLI and a denied tool call', function () {
  this.timeout(120_000);
  let mock: ToolModelMock;
  let tb: TestBridge;

  before(async () => {
    mock = await new ToolModelMock().start();
    tb = await startBridge(mock.url);
  });
  after(async () => {
    await tb?.close();
    await mock?.stop();
  });

  it('shows the blocked message and never runs the call', async () => {
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'rm-root', tool: 'Bash', argumentPattern: 'rm -rf /', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200);
    // The model asks the agent to run a destructive command whenever it is offered Bash.
    mock.brain = (v) =>
      v.tools.includes('Bash')
        ? {
            text: 'Cleaning up.',
            calls: [
              {
                name: 'Bash',
                input: { command: 'rm -rf /nonexistent-aibridge-test/', description: 'clean' },
              },
            ],
          }
        : { text: 'ok' };
    const dev = await tb.addUser('claude-policy@example.com');
    const home = await tempDir('aibridge-claude-home-');
    const res = await runClaude({ bridgeUrl: tb.url, key: dev.key, home }, ['-p', 'Tidy the disk']);
    assert.match(res.stdout, /AI Bridge blocked Bash: rm -rf \/nonexistent-aibridge-test\/ \(rule rm-root\)/);
    const withBash = mock.requests.filter((r) => r.view.tools.includes('Bash'));
    assert.ok(withBash.length >= 1, 'claude offered its Bash tool through the bridge');
    assert.ok(
      mock.requests.every((r) => r.view.results.length === 0),
      'no request carried a result of the denied call: the agent never ran it',
    );
    const recs = await tb.interceptions(mock.requests.length, dev.key);
    const denied = recs.flatMap((r) => r.toolCalls).filter((c) => c.policy?.action === 'deny');
    assert.equal(denied.length, withBash.length);
  });
});
