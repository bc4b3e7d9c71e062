import assert from 'node:assert/strict';
import { codexHome, runCodexExec } from '../helpers/agent-cli';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { ToolModelMock } from '../helpers/tool-model-mock';

/** The shell tools Codex versions offer, by name. */
const SHELLS = ['shell', 'exec_command', 'container.exec'];

describe('the real codex CLI and a denied tool call', function () {
  this.timeout(120_000);
  let mock: ToolModelMock;
  let tb: TestBridge;

  before(async () => {
    mock = await new ToolModelMock().start();
    tb = await startBridge(mock.url, { AIBRIDGE_OPENAI_BASE_URL: `${mock.url}/v1` });
  });
  after(async () => {
    await tb?.close();
    await mock?.stop();
  });

  it('shows the blocked message and never runs the call', async () => {
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'rm-root', tool: '*', argumentPattern: 'rm -rf /', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200);
    const offered: string[][] = [];
    mock.brain = (v) => {
      offered.push(v.tools);
      const shell = SHELLS.find((s) => v.tools.includes(s));
      return shell && v.results.length === 0
        ? {
            text: 'Cleaning up.',
            calls: [
              { name: shell, input: { command: ['bash', '-lc', 'rm -rf /nonexistent-aibridge-test'] } },
            ],
          }
        : { text: 'done' };
    };
    const dev = await tb.addUser('codex-policy@example.com');
    const home = await codexHome(`${tb.url}/openai/v1`);
    const res = await runCodexExec({ home, key: dev.key }, 'Tidy the disk');
    assert.ok(
      offered.some((t) => SHELLS.some((s) => t.includes(s))),
      `codex offered a shell tool: ${JSON.stringify(offered)}`,
    );
    assert.match(
      `${res.stdout}\n${res.stderr}`,
      /AI Bridge blocked \S+: rm -rf \/nonexistent-aibridge-test \(rule rm-root\)/,
    );
    assert.ok(
      mock.requests.every((r) => r.view.results.length === 0),
      'no request carried a result of the denied call: codex never ran it',
    );
  });
});
