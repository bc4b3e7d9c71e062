import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import {
  claudeGatewayEntry,
  withClaudeGateway,
  withoutClaudeGateway,
} from '../../extension/agents/claude-mcp';
import { prepareAgents, undoAgents } from '../../extension/agents/prepare-agents';
import { withGatewayServer, withoutGatewayServer } from '../../extension/codex/codex-mcp';
import { tempDir } from '../helpers/bridge';

const URL = 'https://bridge.example.com';
const OTHER = 'https://other-bridge.example.com';
const ENTRY = {
  type: 'http',
  url: `${URL}/mcp`,
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the reference claude expands, as written
  headers: { Authorization: 'Bearer ${ANTHROPIC_AUTH_TOKEN}' },
};

/** With aibridge.byok: the bridge key from AIBRIDGE_KEY, in the header the bridge reads beside a user's own credential. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: the reference claude expands, as written
const BYOK_HEADERS = { 'X-AIBridge-Key': '${AIBRIDGE_KEY}' };

type Json = Record<string, unknown>;

/** The TOML as plain objects (smol-toml's tables have no prototype). */
function parse(text: string): Json {
  return JSON.parse(JSON.stringify(parseToml(text))) as Json;
}

function ok(r: { ok: true; text: string; changed: boolean } | { ok: false; message: string }): {
  text: string;
  changed: boolean;
} {
  assert.ok(r.ok, r.ok ? '' : r.message);
  return r;
}

const CLAUDE_USER = `{
    "numStartups": 3,
    "mcpServers": {
        "github": {
            "type": "stdio",
            "command": "gh-mcp",
            "args": []
        }
    },
    "projects": {
        "/src/app": {
            "hasTrustDialogAccepted": true
        }
    }
}
`;

describe('extension: the MCP gateway in Claude Code (~/.claude.json mcpServers)', () => {
  it('is written as `claude mcp add --transport http --scope user` writes it, with the key as a variable reference', () => {
    assert.deepEqual(claudeGatewayEntry(URL), ENTRY);
    const r = ok(withClaudeGateway('', URL));
    assert.equal(r.changed, true);
    assert.deepEqual(JSON.parse(r.text), { mcpServers: { aibridge: ENTRY } });
  });

  it("keeps the user's other servers, keys, their order and the file's indentation; a second run changes nothing", () => {
    const r = ok(withClaudeGateway(CLAUDE_USER, URL));
    const config = JSON.parse(r.text) as Json;
    assert.deepEqual(Object.keys(config), ['numStartups', 'mcpServers', 'projects']);
    assert.deepEqual(config.mcpServers, {
      ...(JSON.parse(CLAUDE_USER) as Json).mcpServers!,
      aibridge: ENTRY,
    });
    assert.match(r.text, /^ {4}"numStartups"/m, 'four-space indentation kept');
    const again = ok(withClaudeGateway(r.text, URL));
    assert.equal(again.changed, false);
    assert.equal(again.text, r.text);
    // A new bridge URL replaces our entry in place.
    const moved = JSON.parse(ok(withClaudeGateway(r.text, OTHER)).text) as { mcpServers: Json };
    assert.deepEqual(moved.mcpServers.aibridge, { ...ENTRY, url: `${OTHER}/mcp` });
  });

  it('undo removes only our entry (and an mcpServers it leaves empty); a round trip gives back the file', () => {
    const added = ok(withClaudeGateway(CLAUDE_USER, URL)).text;
    const removed = ok(withoutClaudeGateway(added));
    assert.equal(removed.changed, true);
    assert.equal(removed.text, CLAUDE_USER);
    const alone = ok(withoutClaudeGateway(ok(withClaudeGateway('{"a": 1}', URL)).text));
    assert.deepEqual(JSON.parse(alone.text), { a: 1 });
    assert.equal(ok(withoutClaudeGateway('')).changed, false);
    assert.equal(ok(withoutClaudeGateway(CLAUDE_USER)).changed, false);
  });

  it("refuses invalid files and never replaces or removes the user's own aibridge entry", () => {
    for (const bad of ['{ not json', '[]', '{"mcpServers": []}']) {
      assert.equal(withClaudeGateway(bad, URL).ok, false, bad);
      assert.equal(withoutClaudeGateway(bad).ok, false, bad);
    }
    const own = JSON.stringify({
      mcpServers: {
        aibridge: { type: 'http', url: `${URL}/mcp`, headers: { Authorization: 'Bearer aib_literal' } },
      },
    });
    const r = withClaudeGateway(own, URL);
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.message, /its own "aibridge"/);
    assert.equal(ok(withoutClaudeGateway(own)).changed, false);
  });
});

const CODEX_USER = `# my codex settings
model = "gpt-5-codex"

[mcp_servers.docs]
command = "npx"
args = ["-y", "docs-mcp"]

[projects."/src/app"]
trust_level = "trusted"
`;
const SERVER = { url: `${URL}/mcp`, bearer_token_env_var: 'OPENAI_API_KEY' };

describe('extension: the MCP gateway in Codex ([mcp_servers.aibridge])', () => {
  it('adds the server with the bearer token from OPENAI_API_KEY, keeping every other line', () => {
    const r = ok(withGatewayServer(CODEX_USER, URL));
    assert.equal(r.changed, true);
    assert.ok(r.text.startsWith(CODEX_USER), r.text);
    const v = parse(r.text) as { mcp_servers: Json; projects: Json };
    assert.deepEqual(v.mcp_servers.aibridge, SERVER);
    assert.deepEqual(v.mcp_servers.docs, { command: 'npx', args: ['-y', 'docs-mcp'] });
    assert.deepEqual(parse(ok(withGatewayServer('', URL)).text), { mcp_servers: { aibridge: SERVER } });
  });

  it('a second run changes nothing; a new URL is replaced in place, before tables added after it', () => {
    const first = ok(withGatewayServer(CODEX_USER, URL)).text;
    assert.equal(ok(withGatewayServer(first, URL)).changed, false);
    const later = `${first}\n[mcp_servers.added_later]\nurl = "https://x.example.com/mcp"\n`;
    const moved = ok(withGatewayServer(later, OTHER)).text;
    assert.equal(moved, later.replace(`${URL}/mcp`, `${OTHER}/mcp`));
  });

  it('undo removes only our table; a round trip gives back the file, CRLF included', () => {
    const added = ok(withGatewayServer(CODEX_USER, URL)).text;
    assert.equal(ok(withoutGatewayServer(added)).text, CODEX_USER);
    const crlf = CODEX_USER.replace(/\n/g, '\r\n');
    const addedCrlf = ok(withGatewayServer(crlf, URL)).text;
    assert.ok(!/[^\r]\n/.test(addedCrlf), 'CRLF kept');
    assert.equal(ok(withoutGatewayServer(addedCrlf)).text, crlf);
    // In the middle of the file, too.
    const middle = CODEX_USER.replace(
      '[mcp_servers.docs]',
      `[mcp_servers.aibridge]\nurl = "${URL}/mcp"\nbearer_token_env_var = "OPENAI_API_KEY"\n\n[mcp_servers.docs]`,
    );
    assert.equal(ok(withoutGatewayServer(middle)).text, CODEX_USER);
    assert.equal(ok(withoutGatewayServer(ok(withGatewayServer('', URL)).text)).text, '');
    assert.equal(ok(withoutGatewayServer(CODEX_USER)).changed, false);
  });

  it("refuses invalid TOML, an inline definition it cannot edit safely, and the user's own aibridge server", () => {
    assert.equal(withGatewayServer('model = ', URL).ok, false);
    assert.equal(withoutGatewayServer('model = ').ok, false);
    const inline = `mcp_servers.aibridge.url = "${URL}/mcp"\nmcp_servers.aibridge.bearer_token_env_var = "OPENAI_API_KEY"\n`;
    assert.equal(withGatewayServer(inline, OTHER).ok, false);
    assert.equal(withoutGatewayServer(inline).ok, false);
    const own = `[mcp_servers.aibridge]\nurl = "${URL}/mcp"\nbearer_token_env_var = "MY_BRIDGE_KEY"\n`;
    const r = withGatewayServer(own, URL);
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.message, /its own \[mcp_servers\.aibridge\]/);
    assert.equal(ok(withoutGatewayServer(own)).changed, false);
  });
});

describe('extension: prepareAgents / undoAgents and the MCP gateway', () => {
  it('writes both agents at sign-in (one .bak of the user file each), removes them at sign-out; mcpGateway: false skips or removes it', async () => {
    const home = await tempDir('aibridge-mcp-prepare-');
    const env = { HOME: home };
    const claudeFile = path.join(home, '.claude.json');
    const codexFile = path.join(home, '.codex', 'config.toml');
    await fs.writeFile(claudeFile, CLAUDE_USER);
    await fs.mkdir(path.dirname(codexFile));
    await fs.writeFile(codexFile, CODEX_USER);

    const report = await prepareAgents({ url: URL, trustedFolders: [], env });
    assert.deepEqual(report.problems, []);
    const claude = JSON.parse(await fs.readFile(claudeFile, 'utf8')) as { mcpServers: Json };
    assert.deepEqual(claude.mcpServers.aibridge, ENTRY);
    const codex = parse(await fs.readFile(codexFile, 'utf8')) as { mcp_servers: Json };
    assert.deepEqual(codex.mcp_servers.aibridge, SERVER);
    // The previous versions kept are the user's own files, not a half-edited one.
    assert.equal(await fs.readFile(`${claudeFile}.bak`, 'utf8'), CLAUDE_USER);
    assert.equal(await fs.readFile(`${codexFile}.bak`, 'utf8'), CODEX_USER);

    const undo = await undoAgents({ env });
    assert.deepEqual(undo.problems, []);
    assert.equal(
      (JSON.parse(await fs.readFile(claudeFile, 'utf8')) as { mcpServers: Json }).mcpServers.aibridge,
      undefined,
    );
    assert.equal(await fs.readFile(codexFile, 'utf8'), CODEX_USER);

    // mcpGateway: false writes none, and removes the entries an earlier sign-in wrote.
    const off = await tempDir('aibridge-mcp-off-');
    await prepareAgents({ url: URL, trustedFolders: [], env: { HOME: off }, mcpGateway: false });
    assert.ok(!(await fs.readFile(path.join(off, '.claude.json'), 'utf8')).includes('mcpServers'));
    assert.ok(!(await fs.readFile(path.join(off, '.codex', 'config.toml'), 'utf8')).includes('mcp_servers'));
    await prepareAgents({ url: URL, trustedFolders: [], env: { HOME: off } });
    assert.match(await fs.readFile(path.join(off, '.claude.json'), 'utf8'), /"aibridge"/);
    const offAgain = await prepareAgents({
      url: URL,
      trustedFolders: [],
      env: { HOME: off },
      mcpGateway: false,
    });
    assert.deepEqual(offAgain.problems, []);
    assert.ok(!(await fs.readFile(path.join(off, '.claude.json'), 'utf8')).includes('mcpServers'));
    assert.ok(!(await fs.readFile(path.join(off, '.codex', 'config.toml'), 'utf8')).includes('mcp_servers'));
  });

  it("a user's own aibridge MCP entry is reported and left; the rest of the agent is still prepared", async () => {
    const home = await tempDir('aibridge-mcp-own-');
    const claudeFile = path.join(home, '.claude.json');
    const own = { aibridge: { type: 'http', url: 'https://x/mcp', headers: { Authorization: 'Bearer k' } } };
    await fs.writeFile(claudeFile, JSON.stringify({ mcpServers: own }));
    const report = await prepareAgents({ url: URL, trustedFolders: [], env: { HOME: home } });
    assert.equal(report.problems.length, 1, report.problems.join('\n'));
    assert.match(report.problems[0] ?? '', /\.claude\.json: .*its own "aibridge"/);
    const claude = JSON.parse(await fs.readFile(claudeFile, 'utf8')) as Json;
    assert.equal(claude.hasCompletedOnboarding, true);
    assert.deepEqual(claude.mcpServers, own);
  });
});

describe('extension: the MCP gateway with aibridge.byok (the provider variables hold the user’s own key)', () => {
  it('Claude Code sends the bridge key as X-AIBridge-Key from AIBRIDGE_KEY; turning byok on or off rewrites the entry, and sign-out removes either', () => {
    const byok = ok(withClaudeGateway(CLAUDE_USER, URL, true));
    const entry = (JSON.parse(byok.text) as { mcpServers: Json }).mcpServers.aibridge;
    assert.deepEqual(entry, { type: 'http', url: `${URL}/mcp`, headers: BYOK_HEADERS });
    const off = ok(withClaudeGateway(byok.text, URL, false));
    assert.deepEqual((JSON.parse(off.text) as { mcpServers: Json }).mcpServers.aibridge, ENTRY);
    assert.equal(ok(withClaudeGateway(off.text, URL, true)).text, byok.text);
    assert.equal(
      (JSON.parse(ok(withoutClaudeGateway(byok.text)).text) as Json).mcpServers !== undefined,
      true,
    );
    assert.equal(
      (JSON.parse(ok(withoutClaudeGateway(byok.text)).text) as { mcpServers: Json }).mcpServers.aibridge,
      undefined,
    );
  });

  it('Codex reads the bearer token from AIBRIDGE_KEY, never the user’s OPENAI_API_KEY; either form is ours to replace and remove', () => {
    const byok = ok(withGatewayServer(CODEX_USER, URL, true)).text;
    assert.deepEqual((parse(byok) as { mcp_servers: Json }).mcp_servers.aibridge, {
      url: `${URL}/mcp`,
      bearer_token_env_var: 'AIBRIDGE_KEY',
    });
    const off = ok(withGatewayServer(byok, URL, false)).text;
    assert.deepEqual((parse(off) as { mcp_servers: Json }).mcp_servers.aibridge, SERVER);
    assert.equal(ok(withoutGatewayServer(byok)).text, CODEX_USER);
  });

  it('prepareAgents writes the byok forms for both agents', async () => {
    const home = await tempDir('aibridge-byok-gateway-');
    const env = { HOME: home, CODEX_HOME: path.join(home, '.codex') };
    const r = await prepareAgents({ url: URL, trustedFolders: [], env, byok: true, mcpGateway: true });
    assert.deepEqual(r.problems, []);
    const claude = JSON.parse(await fs.readFile(path.join(home, '.claude.json'), 'utf8')) as {
      mcpServers: Json;
    };
    assert.deepEqual(claude.mcpServers.aibridge, {
      type: 'http',
      url: `${URL}/mcp`,
      headers: BYOK_HEADERS,
    });
    const codex = parse(await fs.readFile(path.join(home, '.codex', 'config.toml'), 'utf8')) as {
      mcp_servers: Json;
    };
    assert.deepEqual(codex.mcp_servers.aibridge, { url: `${URL}/mcp`, bearer_token_env_var: 'AIBRIDGE_KEY' });
    await undoAgents({ env });
    const after = JSON.parse(await fs.readFile(path.join(home, '.claude.json'), 'utf8')) as {
      mcpServers?: Json;
    };
    assert.equal(after.mcpServers?.aibridge, undefined);
  });
});
