import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'smol-toml';
import {
  codexProfileText,
  withBridgeProvider,
  withoutBridgeProvider,
} from '../../extension/codex/codex-config';
import {
  codexConfigPath,
  codexProfilePath,
  readCodexConfig,
  writeCodexConfig,
} from '../../extension/codex/codex-file';
import { tempDir } from '../helpers/temp-dirs';

const URL = 'https://bridge.example.com';
const PROVIDER = {
  name: 'AI Bridge',
  base_url: `${URL}/openai/v1`,
  env_key: 'OPENAI_API_KEY',
  wire_api: 'responses',
  supports_websockets: false,
};

const USER_CONFIG = `# my codex settings
model = "gpt-5-codex"
approval_policy = "on-request"

[model_providers.azure]
name = "Azure"
base_url = "https://example.openai.azure.com/openai"
env_key = "AZURE_OPENAI_API_KEY"

[mcp_servers.docs]
command = "npx"
args = ["-y", "docs-mcp"]
`;

/** What the extension before codex 0.169 wrote ("Add and Make Default"); codex 0.169 refuses it. */
const LEGACY = `profile = "aibridge"
${USER_CONFIG}
# Added by the AI Bridge extension ("AI Bridge: Configure Codex"). Use: codex --profile aibridge
[model_providers.aibridge]
name = "AI Bridge"
base_url = "https://old.example.com/openai/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"

[profiles.aibridge]
model_provider = "aibridge"
`;

type Toml = Record<string, unknown>;
const toml = (text: string) => parse(text) as Toml;
const sub = (v: Toml, ...keys: string[]) =>
  keys.reduce<unknown>((t, k) => (t as Toml | undefined)?.[k], v) as Toml | undefined;

/** Every line of `user` is in `text`, in the same order (comments included). */
function keepsLines(text: string, user: string): void {
  const lines = text.split('\n');
  let at = 0;
  for (const l of user.trimEnd().split('\n')) {
    const found = lines.indexOf(l, at);
    assert.ok(found !== -1, `line kept: ${JSON.stringify(l)}\n${text}`);
    at = found + 1;
  }
}

describe('extension: Codex config (codex ≥ 0.169)', () => {
  it('adds the aibridge provider and makes it the default when no other provider is, keeping every line', () => {
    const r = withBridgeProvider(USER_CONFIG, { url: URL, makeDefault: false });
    assert.ok(r.ok);
    assert.equal(r.isDefault, true);
    keepsLines(r.text, USER_CONFIG);
    const v = toml(r.text);
    assert.deepEqual({ ...sub(v, 'model_providers', 'aibridge') }, PROVIDER);
    assert.equal(v.model_provider, 'aibridge');
    assert.equal(v.model, 'gpt-5-codex');
    assert.equal(sub(v, 'model_providers', 'azure')?.env_key, 'AZURE_OPENAI_API_KEY');
    assert.equal(v.profiles, undefined, 'no [profiles] table: codex 0.169 refuses it');
    assert.equal(v.profile, undefined);
    // A root key, before the first table.
    assert.ok(r.text.indexOf('model_provider = "aibridge"') < r.text.indexOf('[model_providers.azure]'));
  });

  it('leaves the user\'s default provider alone unless asked ("make default" replaces it)', () => {
    const own = `model_provider = "azure"\n${USER_CONFIG}`;
    const kept = withBridgeProvider(own, { url: URL, makeDefault: false });
    assert.ok(kept.ok);
    assert.equal(kept.isDefault, false);
    assert.equal(toml(kept.text).model_provider, 'azure');
    assert.ok(kept.text.startsWith(own.trimEnd()), 'only appended');
    const made = withBridgeProvider(own, { url: URL, makeDefault: true });
    assert.ok(made.ok);
    assert.equal(made.isDefault, true);
    assert.equal(toml(made.text).model_provider, 'aibridge');
    assert.equal(made.text.match(/^model_provider = /gm)?.length, 1);
    const fresh = withBridgeProvider('', { url: URL, makeDefault: false });
    assert.ok(fresh.ok);
    assert.equal(toml(fresh.text).model_provider, 'aibridge');
  });

  it('running it again changes nothing; a new URL is replaced in place, even with tables codex added after ours', () => {
    const first = withBridgeProvider(USER_CONFIG, {
      url: URL,
      makeDefault: false,
      trustedFolders: ['/w/app'],
    });
    assert.ok(first.ok);
    const again = withBridgeProvider(first.text, {
      url: URL,
      makeDefault: false,
      trustedFolders: ['/w/app'],
    });
    assert.ok(again.ok);
    assert.equal(again.changed, false);
    assert.equal(again.text, first.text);
    // codex itself appends tables ([tui], ...) after ours.
    const codexWrote = `${first.text}\n[tui]\nscreen_reader_detection_done = true\n`;
    const moved = withBridgeProvider(codexWrote, { url: 'https://other.example.com', makeDefault: false });
    assert.ok(moved.ok);
    assert.equal(moved.text, codexWrote.replace(`${URL}/openai/v1`, 'https://other.example.com/openai/v1'));
  });

  it('removes the legacy profile = "aibridge" and [profiles.aibridge] an earlier version wrote', () => {
    const r = withBridgeProvider(LEGACY, { url: URL, makeDefault: false });
    assert.ok(r.ok);
    const v = toml(r.text);
    assert.equal(v.profile, undefined);
    assert.equal(v.profiles, undefined);
    assert.equal(v.model_provider, 'aibridge');
    assert.deepEqual({ ...sub(v, 'model_providers', 'aibridge') }, PROVIDER);
    assert.doesNotMatch(r.text, /profile|Configure Codex/);
    keepsLines(r.text, USER_CONFIG);
    // The user's own profiles table stays.
    const mine = withBridgeProvider(`${LEGACY}\n[profiles.fast]\nmodel = "gpt-5-mini"\n`, {
      url: URL,
      makeDefault: false,
    });
    assert.ok(mine.ok);
    assert.equal(sub(toml(mine.text), 'profiles', 'fast')?.model, 'gpt-5-mini');
    assert.equal(sub(toml(mine.text), 'profiles', 'aibridge'), undefined);
  });

  it('trusts the given folders, keeping an entry the user already has for one', () => {
    const own = `${USER_CONFIG}\n[projects."/w/secret"]\ntrust_level = "untrusted"\n`;
    const odd = 'C:\\work\\a.b "q"';
    const r = withBridgeProvider(own, {
      url: URL,
      makeDefault: false,
      trustedFolders: ['/w/app', '/w/secret', odd, '/w/app'],
    });
    assert.ok(r.ok);
    assert.deepEqual(r.keptProjects, ['/w/secret']);
    const v = toml(r.text);
    assert.deepEqual({ ...sub(v, 'projects', '/w/app') }, { trust_level: 'trusted' });
    assert.deepEqual({ ...sub(v, 'projects', odd) }, { trust_level: 'trusted' });
    assert.deepEqual({ ...sub(v, 'projects', '/w/secret') }, { trust_level: 'untrusted' });
    assert.equal(r.text.match(/\/w\/app/g)?.length, 1);
  });

  it('refuses invalid TOML, and an aibridge provider defined inline it cannot replace safely', () => {
    const bad = withBridgeProvider('model = "x\n', { url: URL, makeDefault: false });
    assert.equal(bad.ok, false);
    const inline = withBridgeProvider('model_providers = { aibridge = { name = "mine" } }\n', {
      url: URL,
      makeDefault: false,
    });
    assert.equal(inline.ok, false);
    assert.equal(withoutBridgeProvider('model = "x\n').ok, false);
  });

  it('sign-out removes the provider, the default it set and the legacy lines; trusted folders stay', () => {
    const added = withBridgeProvider(USER_CONFIG, { url: URL, makeDefault: false });
    assert.ok(added.ok);
    const undone = withoutBridgeProvider(added.text);
    assert.ok(undone.ok);
    assert.equal(undone.text, USER_CONFIG, 'back to the user file, byte for byte');
    const fromEmpty = withBridgeProvider('', { url: URL, makeDefault: false, trustedFolders: ['/w/app'] });
    assert.ok(fromEmpty.ok);
    const left = withoutBridgeProvider(fromEmpty.text);
    assert.ok(left.ok);
    assert.equal(left.text, '[projects."/w/app"]\ntrust_level = "trusted"\n');
    const legacy = withoutBridgeProvider(LEGACY);
    assert.ok(legacy.ok);
    assert.deepEqual(toml(legacy.text), toml(USER_CONFIG));
    // The user's own default provider is not ours to remove.
    const own = withBridgeProvider(`model_provider = "azure"\n${USER_CONFIG}`, {
      url: URL,
      makeDefault: false,
    });
    assert.ok(own.ok);
    const ownUndone = withoutBridgeProvider(own.text);
    assert.ok(ownUndone.ok);
    assert.equal(ownUndone.text, `model_provider = "azure"\n${USER_CONFIG}`);
    const nothing = withoutBridgeProvider(USER_CONFIG);
    assert.ok(nothing.ok);
    assert.equal(nothing.changed, false);
  });

  it('the profile file selects the provider; paths follow CODEX_HOME', () => {
    assert.equal(toml(codexProfileText()).model_provider, 'aibridge');
    assert.equal(codexProfilePath({ CODEX_HOME: '/c' }), path.join('/c', 'aibridge.config.toml'));
    assert.equal(codexConfigPath({ HOME: '/h' }), path.join('/h', '.codex', 'config.toml'));
    assert.equal(codexConfigPath({}), path.join(os.homedir(), '.codex', 'config.toml'));
  });

  it('reads a missing file as empty, writes atomically, keeps a .bak and the file mode', async () => {
    const dir = await tempDir('aibridge-codex-');
    try {
      const file = codexConfigPath({ CODEX_HOME: dir });
      assert.equal(file, path.join(dir, 'config.toml'));
      assert.equal(await readCodexConfig(file), '');
      await writeCodexConfig(file, USER_CONFIG, '');
      assert.equal((await fs.stat(file)).mode & 0o777, 0o600, 'a new file is private');
      await fs.chmod(file, 0o640);
      const r = withBridgeProvider(await readCodexConfig(file), { url: URL, makeDefault: false });
      assert.ok(r.ok);
      await writeCodexConfig(file, r.text, USER_CONFIG);
      assert.equal(await fs.readFile(`${file}.bak`, 'utf8'), USER_CONFIG);
      assert.equal(await fs.readFile(file, 'utf8'), r.text);
      assert.equal((await fs.stat(file)).mode & 0o777, 0o640, 'an existing file keeps its mode');
      assert.deepEqual((await fs.readdir(dir)).sort(), ['config.toml', 'config.toml.bak']);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
  it('bring your own key: env_http_headers sends the bridge key from AIBRIDGE_KEY; OPENAI_API_KEY stays the user’s', () => {
    const r = withBridgeProvider(USER_CONFIG, { url: URL, makeDefault: false, byok: true });
    assert.ok(r.ok);
    const v = toml(r.text);
    const table = sub(v, 'model_providers', 'aibridge');
    assert.deepEqual(
      { ...table, env_http_headers: { ...sub(v, 'model_providers', 'aibridge', 'env_http_headers') } },
      { ...PROVIDER, env_http_headers: { 'X-AIBridge-Key': 'AIBRIDGE_KEY' } },
    );
    assert.ok(r.text.includes('env_http_headers = { "X-AIBridge-Key" = "AIBRIDGE_KEY" }'));
    keepsLines(r.text, USER_CONFIG);
    // Turned off again: the table is rewritten without it.
    const off = withBridgeProvider(r.text, { url: URL, makeDefault: false });
    assert.ok(off.ok && off.changed);
    assert.deepEqual({ ...sub(toml(off.text), 'model_providers', 'aibridge') }, PROVIDER);
  });
});
