import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { prepareAgents, undoAgents } from '../../extension/agents/prepare-agents';
import { bridgeHasGateway } from '../../extension/mcp/gateway-provider';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { everythingStdio } from '../helpers/mcp-servers';
import { run } from '../helpers/run';
import { ToolModelMock } from '../helpers/tool-model-mock';

const require = createRequire(import.meta.url);
const CLAUDE = path.join(
  path.dirname(require.resolve('@anthropic-ai/claude-code/package.json')),
  'bin',
  'claude.exe',
);
const CODEX = path.join(path.dirname(require.resolve('@openai/codex/package.json')), 'bin', 'codex.js');

/** The variables the extension puts in a terminal (extension/terminal/env.ts), for this key. */
function terminalEnv(url: string, key: string, home: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: home,
    TMPDIR: home,
    ANTHROPIC_BASE_URL: `${url}/anthropic`,
    ANTHROPIC_AUTH_TOKEN: key,
    OPENAI_BASE_URL: `${url}/openai/v1`,
    OPENAI_API_KEY: key,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_AUTOUPDATER: '1',
    CI: '1',
  };
}

describe('extension: the MCP gateway registered with the real claude and codex', function () {
  this.timeout(180_000);
  let mock: ToolModelMock;
  let tb: TestBridge;

  before(async () => {
    mock = await new ToolModelMock().start();
    // Codex offers MCP tools in a Responses `namespace` tool, `mcp__aibridge`.
    mock.brain = (v) => {
      if (v.results.length > 0) return { text: `Tool said: ${v.results.map((r) => r.text).join(' | ')}` };
      if (v.tools.includes('mcp__aibridge'))
        return {
          text: 'Calling.',
          calls: [
            { name: 'everything__echo', namespace: 'mcp__aibridge', input: { message: 'prepared codex' } },
          ],
        };
      return { text: `No gateway tools offered: ${v.tools.join(',')}` };
    };
    tb = await startBridge(mock.url, {
      AIBRIDGE_OPENAI_BASE_URL: `${mock.url}/v1`,
      AIBRIDGE_MCP_CREDENTIALS_KEY: randomBytes(32).toString('base64'),
      AIBRIDGE_MCP_API_STDIO: 'true',
    });
    const put = await tb.api('PUT', '/api/v1/mcp/servers/everything', tb.adminKey, everythingStdio());
    assert.equal(put.status, 200, JSON.stringify(put.body));
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  it('bridgeHasGateway: yes for a bridge with /mcp; no for another server or none', async () => {
    assert.equal(await bridgeHasGateway(tb.url), true);
    // The mock model is an HTTP server without the gateway (404); port 9 answers nothing.
    assert.equal(await bridgeHasGateway(mock.url), false);
    assert.equal(await bridgeHasGateway('http://127.0.0.1:9'), false);
  });

  it('claude mcp list: the gateway written by prepareAgents connects with the terminal key, and is gone after undo', async () => {
    const dev = await tb.addUser('claude-mcp@example.com');
    const home = await tempDir('aibridge-claude-mcp-');
    const report = await prepareAgents({ url: tb.url, trustedFolders: [], env: { HOME: home } });
    assert.deepEqual(report.problems, []);
    const written = await fs.readFile(path.join(home, '.claude.json'), 'utf8');
    assert.ok(!written.includes(dev.key), 'the key is not written to disk');

    const listed = await run(CLAUDE, ['mcp', 'list'], terminalEnv(tb.url, dev.key, home), home);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(
      listed.stdout,
      new RegExp(`aibridge: ${tb.url}/mcp \\(HTTP\\) - ✔ Connected`),
      listed.stdout,
    );

    // The header really is the terminal's variable: with another key the bridge refuses it.
    const wrong = await run(CLAUDE, ['mcp', 'list'], terminalEnv(tb.url, 'aib_not-a-key', home), home);
    assert.match(wrong.stdout, /aibridge: .*\/mcp \(HTTP\) - ✘/, wrong.stdout);

    const undo = await undoAgents({ env: { HOME: home } });
    assert.deepEqual(undo.problems, []);
    const after = await run(CLAUDE, ['mcp', 'list'], terminalEnv(tb.url, dev.key, home), home);
    assert.doesNotMatch(after.stdout, /aibridge/, after.stdout);
  });

  it('codex: the written [mcp_servers.aibridge] is listed, and codex exec calls a gateway tool with the terminal key', async () => {
    const dev = await tb.addUser('codex-mcp@example.com');
    const home = await tempDir('aibridge-codex-mcp-');
    const codexHome = path.join(home, '.codex');
    const env = { HOME: home, CODEX_HOME: codexHome };
    const report = await prepareAgents({ url: tb.url, trustedFolders: [home], env });
    assert.deepEqual(report.problems, []);
    assert.ok(!(await fs.readFile(path.join(codexHome, 'config.toml'), 'utf8')).includes(dev.key));
    const termEnv = { ...terminalEnv(tb.url, dev.key, home), CODEX_HOME: codexHome };

    const got = await run(process.execPath, [CODEX, 'mcp', 'get', 'aibridge', '--json'], termEnv, home);
    assert.equal(got.code, 0, got.stderr);
    const server = JSON.parse(got.stdout) as { enabled: boolean; transport: Record<string, unknown> };
    assert.equal(server.enabled, true);
    assert.equal(server.transport.type, 'streamable_http');
    assert.equal(server.transport.url, `${tb.url}/mcp`);
    assert.equal(server.transport.bearer_token_env_var, 'OPENAI_API_KEY');

    const res = await run(
      process.execPath,
      [
        CODEX,
        'exec',
        '--skip-git-repo-check',
        '-c',
        'approval_policy="never"',
        '-c',
        'model="gpt-5-codex"',
        'Echo something',
      ],
      termEnv,
      home,
    );
    assert.equal(res.code, 0, `codex failed: ${res.stderr}\n${res.stdout}`);
    assert.match(res.stdout, /Tool said:[\s\S]*Echo: prepared codex/, res.stdout);
    const calls = await eventually(async () => {
      const r = await tb.api<{ items: { name: string; userEmail: string }[] }>(
        'GET',
        '/api/v1/tool-calls?via=gateway',
        dev.key,
      );
      return r.body.items.length > 0 ? r.body.items : undefined;
    });
    assert.equal(calls[0]?.name, 'everything__echo');
    assert.equal(calls[0]?.userEmail, 'codex-mcp@example.com');

    await undoAgents({ env });
    const gone = await run(process.execPath, [CODEX, 'mcp', 'list', '--json'], termEnv, home);
    assert.equal(gone.code, 0, gone.stderr);
    assert.deepEqual(JSON.parse(gone.stdout), []);
  });
});
