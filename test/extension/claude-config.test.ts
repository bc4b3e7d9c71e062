import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { claudeConfigPath, claudeProjectKey, withClaudeReady } from '../../extension/agents/claude-config';
import { prepareAgents, undoAgents } from '../../extension/agents/prepare-agents';
import { codexConfigPath, codexProfilePath } from '../../extension/codex/codex-file';
import { tempDir } from '../helpers/temp-dirs';

/** A ~/.claude.json as claude 2.1 writes it (its own state, which must survive our edit). */
const CLAUDE_STATE = `{
  "numStartups": 7,
  "installMethod": "npm",
  "theme": "dark",
  "hasCompletedOnboarding": false,
  "userID": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
  "projects": {
    "/w/app": {
      "allowedTools": ["Bash(npm test)"],
      "hasTrustDialogAccepted": false,
      "lastCost": 0.25
    },
    "/w/other": {
      "allowedTools": []
    }
  },
  "mcpServers": {
    "docs": { "command": "npx", "args": ["-y", "docs-mcp"] }
  }
}
`;

type Json = Record<string, unknown>;

describe('extension: Claude Code config (~/.claude.json)', () => {
  it('lives in $CLAUDE_CONFIG_DIR/.claude.json when that is set, else ~/.claude.json', () => {
    assert.equal(
      claudeConfigPath({ CLAUDE_CONFIG_DIR: '/cfg', HOME: '/h' }),
      path.join('/cfg', '.claude.json'),
    );
    assert.equal(claudeConfigPath({ HOME: '/h' }), path.join('/h', '.claude.json'));
    assert.equal(claudeConfigPath({}), path.join(os.homedir(), '.claude.json'));
    assert.equal(claudeProjectKey('C:\\work\\app', 'win32'), 'C:/work/app');
    assert.equal(claudeProjectKey('/w/app/', 'linux'), '/w/app');
  });

  it('marks onboarding done and trusts only the folders given, keeping every other key and value', () => {
    const r = withClaudeReady(CLAUDE_STATE, { trustedFolders: ['/w/app', '/w/new'] });
    assert.ok(r.ok);
    assert.equal(r.changed, true);
    const before = JSON.parse(CLAUDE_STATE) as Json;
    const after = JSON.parse(r.text) as Json;
    assert.equal(after.hasCompletedOnboarding, true);
    const projects = after.projects as Record<string, Json>;
    assert.deepEqual(projects['/w/app'], {
      allowedTools: ['Bash(npm test)'],
      hasTrustDialogAccepted: true,
      lastCost: 0.25,
    });
    assert.deepEqual(projects['/w/new'], { hasTrustDialogAccepted: true });
    assert.deepEqual(projects['/w/other'], { allowedTools: [] }, 'a folder not given is not trusted');
    // Everything else, and the key order and indentation claude wrote, stay.
    const rest = (v: Json) => ({ ...v, hasCompletedOnboarding: null, projects: null });
    assert.deepEqual(rest(after), rest(before));
    assert.deepEqual(Object.keys(after), Object.keys(before));
    assert.ok(
      r.text.startsWith('{\n  "numStartups": 7,\n'),
      "claude's own layout (JSON.stringify, 2 spaces)",
    );
    const tabbed = withClaudeReady('{\n\t"theme": "dark"\n}', { trustedFolders: [] });
    assert.ok(tabbed.ok);
    assert.equal(tabbed.text, '{\n\t"theme": "dark",\n\t"hasCompletedOnboarding": true\n}\n');
  });

  it('a fresh file gets the two flags; a second run changes nothing', () => {
    const r = withClaudeReady('', { trustedFolders: ['/w/app'] });
    assert.ok(r.ok);
    assert.deepEqual(JSON.parse(r.text), {
      hasCompletedOnboarding: true,
      projects: { '/w/app': { hasTrustDialogAccepted: true } },
    });
    const again = withClaudeReady(r.text, { trustedFolders: ['/w/app'] });
    assert.ok(again.ok);
    assert.equal(again.changed, false);
    assert.equal(again.text, r.text);
    const noFolders = withClaudeReady('', { trustedFolders: [] });
    assert.ok(noFolders.ok);
    assert.deepEqual(JSON.parse(noFolders.text), { hasCompletedOnboarding: true });
  });

  it('refuses a file that is not a JSON object, rather than replacing it', () => {
    for (const bad of ['{"theme": "dark",', '[]', '{"projects": []}', '{"projects": {"/w/app": 3}}']) {
      const r = withClaudeReady(bad, { trustedFolders: ['/w/app'] });
      assert.equal(r.ok, false, bad);
    }
  });
});

describe('extension: prepareAgents / undoAgents', () => {
  let home: string;
  beforeEach(async () => {
    home = await tempDir('aibridge-agents-');
  });
  afterEach(async () => {
    await fs.rm(home, { recursive: true, force: true });
  });

  it("writes both agents' files (private, .bak of a previous version); undo removes only what codex got from us", async () => {
    const env = { HOME: home };
    const claudeFile = claudeConfigPath(env);
    await fs.writeFile(claudeFile, CLAUDE_STATE, { mode: 0o644 });
    // The MCP gateway entries have their own test (mcp-gateway-config.test.ts).
    const r = await prepareAgents({
      url: 'https://b.example',
      trustedFolders: ['/w/app'],
      env,
      mcpGateway: false,
    });
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.changed, [claudeFile, codexConfigPath(env), codexProfilePath(env)]);
    assert.equal(r.codexIsDefault, true);
    assert.equal(await fs.readFile(`${claudeFile}.bak`, 'utf8'), CLAUDE_STATE);
    assert.equal((await fs.stat(claudeFile)).mode & 0o777, 0o644, "claude's file keeps its mode");
    assert.equal((await fs.stat(codexConfigPath(env))).mode & 0o777, 0o600);
    assert.match(
      await fs.readFile(codexConfigPath(env), 'utf8'),
      /base_url = "https:\/\/b\.example\/openai\/v1"/,
    );

    const again = await prepareAgents({
      url: 'https://b.example',
      trustedFolders: ['/w/app'],
      env,
      mcpGateway: false,
    });
    assert.deepEqual(again, { changed: [], problems: [], codexIsDefault: true });

    const claudeAfter = await fs.readFile(claudeFile, 'utf8');
    const u = await undoAgents({ env });
    assert.deepEqual(u, { changed: [codexConfigPath(env), codexProfilePath(env)], problems: [] });
    assert.equal(
      await fs.readFile(codexConfigPath(env), 'utf8'),
      '[projects."/w/app"]\ntrust_level = "trusted"\n',
    );
    await assert.rejects(fs.stat(codexProfilePath(env)), /ENOENT/);
    assert.equal(await fs.readFile(claudeFile, 'utf8'), claudeAfter, "claude's flags are the user's state");
  });

  it('a folder reached through a symbolic link is trusted by both paths (agents see the real one)', async () => {
    const env = { HOME: home };
    const real = path.join(home, 'real');
    const link = path.join(home, 'link');
    await fs.mkdir(real);
    await fs.symlink(real, link);
    const realPath = await fs.realpath(real);
    const r = await prepareAgents({ url: 'https://b.example', trustedFolders: [link], env });
    assert.deepEqual(r.problems, []);
    const claude = JSON.parse(await fs.readFile(claudeConfigPath(env), 'utf8')) as { projects: Json };
    assert.deepEqual(Object.keys(claude.projects).sort(), [link, realPath].sort());
    const codex = await fs.readFile(codexConfigPath(env), 'utf8');
    assert.ok(
      codex.includes(`[projects.${JSON.stringify(link)}]`) &&
        codex.includes(`[projects.${JSON.stringify(realPath)}]`),
    );
  });

  it("one agent's problem does not stop the other; a profile file the user changed is left alone", async () => {
    const env = { HOME: home, CODEX_HOME: path.join(home, 'codex') };
    const claudeFile = claudeConfigPath(env);
    await fs.writeFile(claudeFile, '{ not json');
    const r = await prepareAgents({ url: 'https://b.example', trustedFolders: [], env });
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0] ?? '', /not valid JSON/);
    assert.equal(await fs.readFile(claudeFile, 'utf8'), '{ not json', 'never clobbered');
    assert.deepEqual(r.changed, [codexConfigPath(env), codexProfilePath(env)]);

    await fs.writeFile(codexProfilePath(env), 'model_provider = "aibridge"\nmodel = "mine"\n');
    const u = await undoAgents({ env });
    assert.match(u.problems.join('\n'), /not written by AI Bridge/);
    assert.equal(
      await fs.readFile(codexProfilePath(env), 'utf8'),
      'model_provider = "aibridge"\nmodel = "mine"\n',
    );
  });
});
