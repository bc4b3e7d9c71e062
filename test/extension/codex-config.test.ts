import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'smol-toml';
import { withBridgeProvider } from '../../extension/codex/codex-config';
import { codexConfigPath, readCodexConfig, writeCodexConfig } from '../../extension/codex/codex-file';

const URL = 'https://bridge.example.com';

const USER_CONFIG = `# my codex settings
model = "gpt-5-codex"
approval_policy = "on-request"

[model_providers.azure]
name = "Azure"
base_url = "https://example.openai.azure.com/openai"
env_key = "AZURE_OPENAI_API_KEY"

[profiles.fast]
model = "gpt-5-mini"  # cheap

[mcp_servers.docs]
command = "npx"
args = ["-y", "docs-mcp"]
`;

describe('extension: Configure Codex (~/.codex/config.toml)', () => {
  it('adds the aibridge provider and profile, keeping every other line as it was', () => {
    const r = withBridgeProvider(USER_CONFIG, { url: URL, makeDefault: false });
    assert.ok(r.ok);
    assert.ok(r.text.startsWith(USER_CONFIG.trimEnd()), 'the user text is kept verbatim, comments included');
    const v = parse(r.text) as Record<string, Record<string, Record<string, unknown>>>;
    assert.deepEqual(
      { ...v.model_providers?.aibridge },
      {
        name: 'AI Bridge',
        base_url: `${URL}/openai/v1`,
        env_key: 'OPENAI_API_KEY',
        wire_api: 'responses',
      },
    );
    assert.deepEqual({ ...v.profiles?.aibridge }, { model_provider: 'aibridge' });
    assert.equal(v.model_providers?.azure?.env_key, 'AZURE_OPENAI_API_KEY');
    assert.equal(v.profiles?.fast?.model, 'gpt-5-mini');
    assert.equal((v as Record<string, unknown>).profile, undefined);
  });

  it('running it again replaces its own tables (a new URL) and changes nothing else; same URL: no change', () => {
    const first = withBridgeProvider(USER_CONFIG, { url: URL, makeDefault: false });
    assert.ok(first.ok);
    const again = withBridgeProvider(first.text, { url: URL, makeDefault: false });
    assert.ok(again.ok);
    assert.equal(again.changed, false);
    const moved = withBridgeProvider(first.text, { url: 'https://other.example.com', makeDefault: false });
    assert.ok(moved.ok);
    assert.equal(moved.text.match(/\[model_providers\.aibridge\]/g)?.length, 1);
    assert.match(moved.text, /base_url = "https:\/\/other\.example\.com\/openai\/v1"/);
    assert.ok(moved.text.startsWith(USER_CONFIG.trimEnd()));
  });

  it('"make default" sets the top-level profile, before the first table, replacing the old one', () => {
    const withProfile = `profile = "fast"\n${USER_CONFIG}`;
    const r = withBridgeProvider(withProfile, { url: URL, makeDefault: true });
    assert.ok(r.ok);
    const v = parse(r.text) as Record<string, unknown>;
    assert.equal(v.profile, 'aibridge');
    assert.equal(v.model, 'gpt-5-codex');
    assert.equal(r.text.match(/^profile = /gm)?.length, 1);
    const fresh = withBridgeProvider('', { url: URL, makeDefault: true });
    assert.ok(fresh.ok);
    assert.equal((parse(fresh.text) as Record<string, unknown>).profile, 'aibridge');
  });

  it('refuses invalid TOML, and an aibridge table defined inline it cannot replace safely', () => {
    const bad = withBridgeProvider('model = "x\n', { url: URL, makeDefault: false });
    assert.equal(bad.ok, false);
    const inline = withBridgeProvider('model_providers = { aibridge = { name = "mine" } }\n', {
      url: URL,
      makeDefault: false,
    });
    assert.equal(inline.ok, false);
  });

  it('reads a missing file as empty, writes atomically and keeps a .bak; CODEX_HOME moves it', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'aibridge-codex-'));
    try {
      const file = codexConfigPath({ CODEX_HOME: dir });
      assert.equal(file, path.join(dir, 'config.toml'));
      assert.equal(codexConfigPath({}), path.join(os.homedir(), '.codex', 'config.toml'));
      assert.equal(await readCodexConfig(file), '');
      await writeCodexConfig(file, USER_CONFIG, '');
      const r = withBridgeProvider(await readCodexConfig(file), { url: URL, makeDefault: false });
      assert.ok(r.ok);
      await writeCodexConfig(file, r.text, USER_CONFIG);
      assert.equal(await fs.readFile(`${file}.bak`, 'utf8'), USER_CONFIG);
      assert.equal(await fs.readFile(file, 'utf8'), r.text);
      assert.deepEqual((await fs.readdir(dir)).sort(), ['config.toml', 'config.toml.bak']);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
