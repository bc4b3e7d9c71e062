import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseConfigYaml } from '@continuedev/config-yaml';
import { withBridgeModels, withoutBridgeModels } from '../../extension/agents/continue-config';
import { geminiSettingsPath } from '../../extension/agents/gemini-settings';
import {
  prepareAgents,
  prepareIdeClientsOnly,
  undoAgents,
  undoIdeClientsOnly,
} from '../../extension/agents/prepare-agents';
import { autoImportSettingValue, importSettingsPath } from '../../extension/agents/roo-settings';
import { tempDir } from '../helpers/bridge';

const URL = 'https://bridge.example.com';
const KEY = 'aib_test_key_0123456789';

const USER_CONTINUE = `# my own setup
name: My Config
version: 0.0.1
schema: v1
models:
  - name: My local model # keep me
    provider: ollama
    model: qwen2.5-coder:7b
context:
  - provider: code
`;

interface ParsedModel {
  name: string;
  provider: string;
  model: string;
  apiBase?: string;
  apiKey?: string;
  requestOptions?: { headers?: Record<string, string> };
}

function models(text: string): ParsedModel[] {
  return (parseConfigYaml(text).models ?? []) as ParsedModel[];
}

describe('extension: IDE clients configured at sign-in', () => {
  it('Continue: the bridge models added, parsed by @continuedev/config-yaml, the user entries and comments kept', () => {
    const r = withBridgeModels(USER_CONTINUE, {
      url: URL,
      key: KEY,
      anthropicModels: ['claude-sonnet-4-5'],
      openaiModels: ['gpt-4.1'],
    });
    assert.ok(r.ok && r.changed);
    const ms = models(r.text);
    assert.deepEqual(
      ms.map((m) => [m.name, m.provider, m.apiBase ?? null]),
      [
        ['My local model', 'ollama', null],
        ['AI Bridge claude-sonnet-4-5', 'anthropic', `${URL}/anthropic/v1/`],
        ['AI Bridge gpt-4.1', 'openai', `${URL}/openai/v1/`],
      ],
    );
    assert.equal(ms[1]!.apiKey, KEY);
    assert.equal(ms[1]!.requestOptions?.headers?.['x-aibridge-client'], 'continue');
    assert.match(r.text, /# my own setup/);
    assert.match(r.text, /# keep me/);
    assert.match(r.text, /context:\n {2}- provider: code/);

    // Again with a new key: replaced, not added twice.
    const again = withBridgeModels(r.text, {
      url: URL,
      key: 'aib_new',
      anthropicModels: ['claude-sonnet-4-5'],
    });
    assert.ok(again.ok);
    assert.deepEqual(
      models(again.text).map((m) => [m.name, m.apiKey ?? null]),
      [
        ['My local model', null],
        ['AI Bridge claude-sonnet-4-5', 'aib_new'],
      ],
    );
    const same = withBridgeModels(again.text, {
      url: URL,
      key: 'aib_new',
      anthropicModels: ['claude-sonnet-4-5'],
    });
    assert.ok(same.ok && !same.changed);

    // Undo: only ours go.
    const undone = withoutBridgeModels(again.text);
    assert.ok(undone.ok && undone.changed);
    assert.deepEqual(
      models(undone.text).map((m) => m.name),
      ['My local model'],
    );
    assert.doesNotMatch(undone.text, /aib_/);
  });

  it('Continue: a new config is valid for Continue; a broken one is refused, never replaced', () => {
    const r = withBridgeModels('', { url: URL, key: KEY, anthropicModels: ['claude-sonnet-4-5'] });
    assert.ok(r.ok);
    assert.equal(parseConfigYaml(r.text).name, 'Local Config');
    assert.equal(models(r.text).length, 1);
    const broken = withBridgeModels('models: [unclosed', { url: URL, key: KEY, anthropicModels: ['m'] });
    assert.equal(broken.ok, false);
    const notList = withBridgeModels('name: x\nmodels: 3\n', { url: URL, key: KEY, anthropicModels: ['m'] });
    assert.equal(notList.ok, false);
  });

  it('prepareAgents sets up Continue, Roo Code and Kilo Code when asked, with a backup; undoAgents takes it back', async () => {
    const home = await tempDir('aibridge-ide-home-');
    const env = { HOME: home };
    const continueFile = path.join(home, '.continue', 'config.yaml');
    await fs.mkdir(path.dirname(continueFile), { recursive: true });
    // As Continue makes it: readable by others, until it holds a key.
    await fs.writeFile(continueFile, USER_CONTINUE, { mode: 0o644 });
    await fs.chmod(continueFile, 0o644);

    // Not asked: nothing of theirs touched.
    const plain = await prepareAgents({ url: URL, trustedFolders: [], env });
    assert.ok(!plain.changed.includes(continueFile));
    assert.equal(plain.settings, undefined);

    const r = await prepareAgents({
      url: URL,
      trustedFolders: [],
      env,
      ide: {
        key: KEY,
        continue: { anthropicModels: ['claude-sonnet-4-5'] },
        rooCode: { model: 'gpt-4.1' },
        kiloCode: { model: 'gpt-4.1' },
      },
    });
    assert.deepEqual(r.problems, []);
    const roo = importSettingsPath('rooCode', env);
    const kilo = importSettingsPath('kiloCode', env);
    assert.ok(r.changed.includes(continueFile) && r.changed.includes(roo) && r.changed.includes(kilo));
    assert.equal(await fs.readFile(`${continueFile}.bak`, 'utf8'), USER_CONTINUE);
    assert.equal(models(await fs.readFile(continueFile, 'utf8')).length, 2);
    assert.deepEqual(r.settings, [
      { key: 'roo-cline.autoImportSettingsPath', value: roo },
      { key: 'kilo-code.autoImportSettingsPath', value: kilo },
    ]);
    const imported = JSON.parse(await fs.readFile(roo, 'utf8')) as {
      providerProfiles: { currentApiConfigName: string; apiConfigs: Record<string, Record<string, unknown>> };
    };
    assert.equal(imported.providerProfiles.currentApiConfigName, 'AI Bridge');
    assert.deepEqual(imported.providerProfiles.apiConfigs['AI Bridge'], {
      id: 'aibridge',
      apiProvider: 'openai',
      openAiBaseUrl: `${URL}/openai/v1`,
      openAiApiKey: KEY,
      openAiModelId: 'gpt-4.1',
      openAiHeaders: { 'x-aibridge-client': 'roo-code' },
    });
    assert.equal((await fs.stat(roo)).mode & 0o777, 0o600);
    assert.equal((await fs.stat(continueFile)).mode & 0o777, 0o600, 'the key is in it: private');
    assert.equal((await fs.stat(`${continueFile}.bak`)).mode & 0o777, 0o600);
    assert.match(await fs.readFile(kilo, 'utf8'), /"x-aibridge-client": "kilo-code"/);

    // Signed in again (a new key): the backup is still the user's own file, not ours with the old key.
    const again = await prepareAgents({
      url: URL,
      trustedFolders: [],
      env,
      ide: { key: `aib_${'N'.repeat(43)}`, continue: { anthropicModels: ['claude-sonnet-4-5'] } },
    });
    assert.deepEqual(again.problems, []);
    assert.equal(await fs.readFile(`${continueFile}.bak`, 'utf8'), USER_CONTINUE);

    const u = await undoAgents({ env });
    assert.deepEqual(u.problems, []);
    assert.deepEqual(
      models(await fs.readFile(continueFile, 'utf8')).map((m) => m.name),
      ['My local model'],
    );
    // Signed out: no key left in Continue's file or its backup.
    for (const f of [continueFile, `${continueFile}.bak`])
      assert.doesNotMatch(await fs.readFile(f, 'utf8'), /aib_/, f);
    await assert.rejects(fs.stat(roo));
    await assert.rejects(fs.stat(kilo));
    assert.deepEqual(u.settings, [
      { key: 'roo-cline.autoImportSettingsPath', value: undefined },
      { key: 'kilo-code.autoImportSettingsPath', value: undefined },
    ]);
  });

  it('an IDE client set up on its own (its command, or aibridge.prepareAgents off) touches no agent file, and its undo takes the key back', async () => {
    const home = await tempDir('aibridge-ide-only-');
    const env = { HOME: home };
    const r = await prepareIdeClientsOnly({
      url: URL,
      trustedFolders: [],
      env,
      ide: { key: KEY, continue: { anthropicModels: ['claude-sonnet-4-5'] }, rooCode: { model: 'gpt-4.1' } },
    });
    assert.deepEqual(r.problems, []);
    const continueFile = path.join(home, '.continue', 'config.yaml');
    const roo = importSettingsPath('rooCode', env);
    assert.deepEqual(r.changed.sort(), [continueFile, roo].sort());
    for (const agentFile of [path.join(home, '.claude.json'), path.join(home, '.codex', 'config.toml')])
      await assert.rejects(fs.stat(agentFile), agentFile);

    const u = await undoIdeClientsOnly({ env });
    assert.deepEqual(u.problems, []);
    assert.doesNotMatch(await fs.readFile(continueFile, 'utf8'), new RegExp(KEY));
    await assert.rejects(fs.stat(roo));
    assert.deepEqual(u.settings, [{ key: 'roo-cline.autoImportSettingsPath', value: undefined }]);
    for (const agentFile of [path.join(home, '.claude.json'), path.join(home, '.codex', 'config.toml')])
      await assert.rejects(fs.stat(agentFile), agentFile);
  });

  it('an old backup of ours holding a key is deleted at sign-in and sign-out; one without a key, or not ours, stays', async () => {
    const home = await tempDir('aibridge-ide-bak-');
    const env = { HOME: home };
    const continueFile = path.join(home, '.continue', 'config.yaml');
    const roo = importSettingsPath('rooCode', env);
    const codexBak = path.join(home, '.codex', 'config.toml.bak');
    // Gemini CLI is edited neither at this sign-in nor at sign-out: its backup is left alone throughout.
    const geminiBak = `${geminiSettingsPath(env)}.bak`;
    // Not a backup of ours, though it holds a key: never touched.
    const notOurs = path.join(home, '.continue', 'config.yaml.old');
    await fs.mkdir(path.dirname(continueFile), { recursive: true });
    await fs.mkdir(path.dirname(codexBak), { recursive: true });
    await fs.mkdir(path.dirname(geminiBak), { recursive: true });
    // What an earlier version left: the signed-in Continue config and Roo import file as backups.
    const withKey = (t: string) => `${t}\n# apiKey: ${KEY}\n`;
    const oldBackups = async () => {
      await fs.mkdir(path.dirname(roo), { recursive: true });
      await fs.writeFile(`${continueFile}.bak`, withKey(USER_CONTINUE));
      await fs.writeFile(`${roo}.bak`, JSON.stringify({ openAiApiKey: KEY }));
    };
    await oldBackups();
    await fs.writeFile(codexBak, 'model = "o3"\n');
    await fs.writeFile(geminiBak, '{"theme":"dark"}');
    await fs.writeFile(notOurs, withKey(USER_CONTINUE));

    const r = await prepareAgents({ url: URL, trustedFolders: [], env });
    assert.deepEqual(r.problems, []);
    await assert.rejects(fs.stat(`${continueFile}.bak`));
    await assert.rejects(fs.stat(`${roo}.bak`));
    assert.ok(r.changed.includes(`${continueFile}.bak`) && r.changed.includes(`${roo}.bak`));
    // Backups without a key are the user's own files as they were: kept as they are.
    assert.equal(await fs.readFile(codexBak, 'utf8'), 'model = "o3"\n');
    assert.equal(await fs.readFile(geminiBak, 'utf8'), '{"theme":"dark"}');
    assert.equal(await fs.readFile(notOurs, 'utf8'), withKey(USER_CONTINUE));

    // Sign-out after an upgrade (no sign-in in between) removes them too.
    await oldBackups();
    const u = await undoAgents({ env });
    assert.deepEqual(u.problems, []);
    await assert.rejects(fs.stat(`${continueFile}.bak`));
    await assert.rejects(fs.stat(`${roo}.bak`));
    assert.equal(await fs.readFile(notOurs, 'utf8'), withKey(USER_CONTINUE));
    assert.equal(await fs.readFile(geminiBak, 'utf8'), '{"theme":"dark"}');
  });

  it("autoImportSettingsPath: set to ours unless the user's points at a file of their own", () => {
    assert.equal(autoImportSettingValue(undefined, '/h/.aibridge/roo.json'), '/h/.aibridge/roo.json');
    assert.equal(autoImportSettingValue('', '/h/.aibridge/roo.json'), '/h/.aibridge/roo.json');
    assert.equal(
      autoImportSettingValue('/h/.aibridge/roo.json', '/h/.aibridge/roo.json'),
      '/h/.aibridge/roo.json',
    );
    assert.equal(autoImportSettingValue('/h/Documents/mine.json', '/h/.aibridge/roo.json'), undefined);
  });
});
