import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { run } from '../helpers/run';
import { ToolModelMock } from '../helpers/tool-model-mock';

const require = createRequire(import.meta.url);
const CODEX = path.join(path.dirname(require.resolve('@openai/codex/package.json')), 'bin', 'codex.js');

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
    const home = await tempDir('aibridge-codex-home-');
    const codexHome = path.join(home, '.codex');
    await fs.mkdir(codexHome);
    await fs.writeFile(
      path.join(codexHome, 'config.toml'),
      [
        'model = "gpt-5-codex"',
        'model_provider = "aibridge"',
        '',
        '[model_providers.aibridge]',
        'name = "AI Bridge"',
        `base_url = "${tb.url}/openai/v1"`,
        'env_key = "OPENAI_API_KEY"',
        'wire_api = "responses"',
        '',
      ].join('\n'),
    );
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: home,
      TMPDIR: home,
      CODEX_HOME: codexHome,
      OPENAI_API_KEY: dev.key,
      CI: '1',
    };
    const res = await run(
      process.execPath,
      [CODEX, 'exec', '--skip-git-repo-check', 'Tidy the disk'],
      env,
      home,
    );
    assert.equal(res.code, 0, `codex failed: ${res.stderr}\n${res.stdout}`);
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
