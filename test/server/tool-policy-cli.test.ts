import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { run } from '../helpers/run';
import { ToolModelMock } from '../helpers/tool-model-mock';

const require = createRequire(import.meta.url);
const CLAUDE = path.join(
  path.dirname(require.resolve('@anthropic-ai/claude-code/package.json')),
  'bin',
  'claude.exe',
);

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
    const res = await run(CLAUDE, ['-p', 'Tidy the disk'], env, home);
    assert.equal(res.code, 0, `claude failed: ${res.stderr}\n${res.stdout}`);
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
