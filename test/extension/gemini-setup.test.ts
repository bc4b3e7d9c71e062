/* biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${url} and ${key} are the setting's placeholders, not template literals */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  GEMINI_API_KEY_AUTH,
  geminiSettingsPath,
  geminiTrustedFoldersPath,
  withApiKeyAuth,
  withTrustedFolders,
} from '../../extension/agents/gemini-settings';
import { prepareAgents } from '../../extension/agents/prepare-agents';
import type { Me } from '../../extension/api/bridge-client';
import { type SecretStore, Session, type StateStore } from '../../extension/auth/session';
import { STORAGE } from '../../extension/ids';
import { computeTerminalEnv, DEFAULT_TERMINAL_ENV, withOwnCredential } from '../../extension/terminal/env';
import { geminiInstance } from '../../shared/gemini-instance';
import type { ProviderInstanceInfo } from '../../shared/identity';
import { tempDir } from '../helpers/bridge';
import { KEY, URL } from './fixtures';

const C = { url: URL, key: KEY };
const BUILT_IN: ProviderInstanceInfo[] = [
  { name: 'anthropic', type: 'anthropic' },
  { name: 'openai', type: 'openai' },
];
const WITH_GEMINI: ProviderInstanceInfo[] = [...BUILT_IN, { name: 'gemini', type: 'gemini' }];

function vars(setting: unknown, providers: readonly ProviderInstanceInfo[] | null): Record<string, string> {
  const env = computeTerminalEnv(setting, C, providers);
  assert.deepEqual(env.problems, []);
  return Object.fromEntries(env.vars);
}

describe('extension: Gemini CLI, which instance', () => {
  it('prefers the instance named gemini, else the first that speaks Gemini; none without one', () => {
    assert.equal(geminiInstance(WITH_GEMINI), 'gemini');
    assert.equal(
      geminiInstance([
        { name: 'vertex-g', type: 'vertex-gemini' },
        { name: 'gemini', type: 'gemini' },
      ]),
      'gemini',
    );
    assert.equal(
      geminiInstance([...BUILT_IN, { name: 'eu', type: 'vertex-gemini' }, { name: 'us', type: 'gemini' }]),
      'eu',
    );
    // A non-Gemini instance that happens to be called gemini is not Gemini.
    assert.equal(geminiInstance([{ name: 'gemini', type: 'openai-compatible' }]), undefined);
    assert.equal(geminiInstance(BUILT_IN), undefined);
    assert.equal(geminiInstance([]), undefined);
    assert.equal(geminiInstance(null), undefined, 'restored offline: not known yet');
    // Only a route prefix goes into the URL.
    assert.equal(geminiInstance([{ name: '../x?${key}', type: 'gemini' }]), undefined);
  });
});

describe('extension: Gemini CLI, terminal variables', () => {
  it('only a bridge serving Gemini gets GOOGLE_GEMINI_BASE_URL (the instance route) and GEMINI_API_KEY', () => {
    const base = vars(undefined, BUILT_IN);
    assert.deepEqual(Object.keys(base), Object.keys(DEFAULT_TERMINAL_ENV));
    assert.equal(base.GEMINI_API_KEY, undefined);
    assert.equal(base.GOOGLE_GEMINI_BASE_URL, undefined);
    assert.equal(vars(undefined, null).GEMINI_API_KEY, undefined);

    const g = vars(undefined, WITH_GEMINI);
    assert.equal(g.GOOGLE_GEMINI_BASE_URL, `${URL}/gemini`);
    assert.equal(g.GEMINI_API_KEY, KEY);
    assert.equal(g.ANTHROPIC_BASE_URL, `${URL}/anthropic`, 'the defaults stay');

    const named = vars(undefined, [...BUILT_IN, { name: 'google-eu', type: 'gemini' }]);
    assert.equal(named.GOOGLE_GEMINI_BASE_URL, `${URL}/google-eu`);
  });

  it('a user list gets the Gemini variables on top, unless it names them: its template wins, null leaves one out', () => {
    const own = { ANTHROPIC_BASE_URL: '${url}/anthropic', ANTHROPIC_API_KEY: '${key}' };
    assert.deepEqual(vars(own, WITH_GEMINI), {
      ANTHROPIC_BASE_URL: `${URL}/anthropic`,
      ANTHROPIC_API_KEY: KEY,
      GOOGLE_GEMINI_BASE_URL: `${URL}/gemini`,
      GEMINI_API_KEY: KEY,
    });
    assert.deepEqual(vars(own, BUILT_IN), { ANTHROPIC_BASE_URL: `${URL}/anthropic`, ANTHROPIC_API_KEY: KEY });

    const noKey = vars({ ...own, GEMINI_API_KEY: null }, WITH_GEMINI);
    assert.equal(noKey.GEMINI_API_KEY, undefined);
    assert.equal(noKey.GOOGLE_GEMINI_BASE_URL, `${URL}/gemini`);
    assert.equal(vars({ ...own, GEMINI_API_KEY: '' }, WITH_GEMINI).GEMINI_API_KEY, undefined);

    const mine = vars({ GOOGLE_GEMINI_BASE_URL: '${url}/gemini-eu' }, WITH_GEMINI);
    assert.equal(mine.GOOGLE_GEMINI_BASE_URL, `${URL}/gemini-eu`);
    assert.equal(mine.GEMINI_API_KEY, KEY);
  });

  it('bring your own key: GEMINI_API_KEY stays the user’s, the bridge key goes in GEMINI_CLI_CUSTOM_HEADERS', () => {
    const byok = Object.fromEntries(withOwnCredential(computeTerminalEnv(undefined, C, WITH_GEMINI), C).vars);
    assert.equal(byok.GEMINI_API_KEY, undefined);
    assert.equal(byok.GOOGLE_GEMINI_BASE_URL, `${URL}/gemini`);
    assert.equal(byok.GEMINI_CLI_CUSTOM_HEADERS, `X-AIBridge-Key: ${KEY}`);

    const own = computeTerminalEnv(
      { GEMINI_CLI_CUSTOM_HEADERS: 'x-team: core, X-AIBridge-Key: old,x-b: 2', GEMINI_API_KEY: 'my-own' },
      C,
      WITH_GEMINI,
    );
    const kept = Object.fromEntries(withOwnCredential(own, C).vars);
    assert.equal(kept.GEMINI_API_KEY, 'my-own', 'a key of the user’s own stays');
    assert.equal(kept.GEMINI_CLI_CUSTOM_HEADERS, `x-team: core,x-b: 2,X-AIBridge-Key: ${KEY}`);

    // No Gemini route: the bridge key goes into no Gemini header.
    const none = Object.fromEntries(withOwnCredential(computeTerminalEnv(undefined, C, BUILT_IN), C).vars);
    assert.equal(none.GEMINI_CLI_CUSTOM_HEADERS, undefined);
    const userOnly = Object.fromEntries(
      withOwnCredential(computeTerminalEnv({ GEMINI_CLI_CUSTOM_HEADERS: 'x-a: 1' }, C, BUILT_IN), C).vars,
    );
    assert.equal(userOnly.GEMINI_CLI_CUSTOM_HEADERS, 'x-a: 1');
  });
});

describe('extension: Gemini CLI, settings.json and trustedFolders.json', () => {
  it('chooses the API-key sign-in when none is chosen, keeping every other key and the indentation', () => {
    const fresh = withApiKeyAuth('');
    assert.ok(fresh.ok && fresh.changed);
    assert.deepEqual(JSON.parse(fresh.text), { security: { auth: { selectedType: GEMINI_API_KEY_AUTH } } });

    const original = `${JSON.stringify(
      {
        ui: { theme: 'GitHub' },
        security: { folderTrust: { enabled: true }, auth: { useExternal: false } },
        model: { name: 'gemini-2.5-pro' },
      },
      null,
      4,
    )}\n`;
    const r = withApiKeyAuth(original);
    assert.ok(r.ok && r.changed);
    assert.deepEqual(JSON.parse(r.text), {
      ui: { theme: 'GitHub' },
      security: {
        folderTrust: { enabled: true },
        auth: { useExternal: false, selectedType: GEMINI_API_KEY_AUTH },
      },
      model: { name: 'gemini-2.5-pro' },
    });
    assert.match(r.text, /^\{\n {4}"ui"/, 'four spaces, as the user had');

    const again = withApiKeyAuth(r.text);
    assert.ok(again.ok && !again.changed);
  });

  it('never replaces a sign-in the user chose; refuses what it cannot edit safely', () => {
    for (const text of [
      JSON.stringify({ security: { auth: { selectedType: 'oauth-personal' } } }),
      JSON.stringify({ security: { auth: { selectedType: 'vertex-ai' } } }),
      JSON.stringify({ selectedAuthType: 'oauth-personal' }),
    ]) {
      const r = withApiKeyAuth(text);
      assert.ok(r.ok && !r.changed && r.text === text, text);
    }
    for (const text of ['// mine\n{"ui": {}}', '[]', '{"security": "x"}', '{"security": {"auth": 1}}']) {
      const r = withApiKeyAuth(text);
      assert.ok(!r.ok, text);
    }
  });

  it('trusts the folders the file says nothing of; the user’s own answer stays', () => {
    const r = withTrustedFolders(JSON.stringify({ '/w/secret': 'DO_NOT_TRUST', '/other': 'TRUST_PARENT' }), [
      '/w/secret',
      '/w/app',
    ]);
    assert.ok(r.ok && r.changed);
    assert.deepEqual(JSON.parse(r.text), {
      '/w/secret': 'DO_NOT_TRUST',
      '/other': 'TRUST_PARENT',
      '/w/app': 'TRUST_FOLDER',
    });
    const again = withTrustedFolders(r.text, ['/w/app']);
    assert.ok(again.ok && !again.changed);
    // macOS and Windows compare paths case-insensitively, as Gemini CLI does.
    const mac = withTrustedFolders(
      JSON.stringify({ '/users/me/app': 'DO_NOT_TRUST' }),
      ['/Users/me/App'],
      'darwin',
    );
    assert.ok(mac.ok && !mac.changed);
    assert.ok(!withTrustedFolders('{"a": ', ['/w']).ok);
  });

  it('prepareAgents writes both files only when asked (the bridge serves Gemini), merging into the user’s', async () => {
    const home = await tempDir('aibridge-gemini-unit-');
    const folder = path.join(home, 'proj');
    const env = { HOME: home };
    const none = await prepareAgents({ url: URL, trustedFolders: [folder], env, mcpGateway: false });
    assert.deepEqual(none.problems, []);
    await assert.rejects(fs.stat(path.join(home, '.gemini')), { code: 'ENOENT' });

    const settings = geminiSettingsPath(env);
    assert.equal(settings, path.join(home, '.gemini', 'settings.json'));
    await fs.mkdir(path.dirname(settings), { recursive: true });
    const mine = `${JSON.stringify({ general: { vimMode: true } }, null, 2)}\n`;
    await fs.writeFile(settings, mine);
    const r = await prepareAgents({
      url: URL,
      trustedFolders: [folder],
      env,
      mcpGateway: false,
      gemini: true,
    });
    assert.deepEqual(r.problems, []);
    assert.ok(r.changed.includes(settings));
    assert.deepEqual(JSON.parse(await fs.readFile(settings, 'utf8')), {
      general: { vimMode: true },
      security: { auth: { selectedType: GEMINI_API_KEY_AUTH } },
    });
    assert.equal(await fs.readFile(`${settings}.bak`, 'utf8'), mine, 'the previous version is kept');
    const trusted = JSON.parse(await fs.readFile(geminiTrustedFoldersPath(env), 'utf8')) as Record<
      string,
      string
    >;
    assert.equal(trusted[folder], 'TRUST_FOLDER');

    // GEMINI_CLI_HOME moves Gemini CLI's folder, and the files with it.
    const other = await tempDir('aibridge-gemini-home-');
    assert.equal(
      geminiSettingsPath({ HOME: home, GEMINI_CLI_HOME: other }),
      path.join(other, '.gemini', 'settings.json'),
    );
    assert.equal(geminiTrustedFoldersPath({ GEMINI_CLI_TRUSTED_FOLDERS_PATH: '/t/f.json' }), '/t/f.json');
  });
});

class Secrets implements SecretStore {
  readonly map = new Map<string, string>();
  async get(k: string) {
    return this.map.get(k);
  }
  async store(k: string, v: string) {
    this.map.set(k, v);
  }
  async delete(k: string) {
    this.map.delete(k);
  }
}

class State implements StateStore {
  readonly map = new Map<string, unknown>();
  get<T>(k: string): T | undefined {
    return this.map.get(k) as T | undefined;
  }
  async update(k: string, v: unknown) {
    if (v === undefined) this.map.delete(k);
    else this.map.set(k, v);
  }
}

describe('extension: the session keeps what the bridge serves', () => {
  const USER = {
    id: 'u1',
    email: 'a@example.com',
    name: null,
    team: null,
    role: 'member' as const,
    createdAt: '',
  };
  const me = (providers?: ProviderInstanceInfo[]): Me => ({
    user: USER,
    key: {} as Me['key'],
    ...(providers ? { providers } : {}),
  });

  it('from /api/v1/me at sign-in; [] from an older bridge; null offline until noted', async () => {
    const s = new Session(new Secrets(), new State(), async () => me(WITH_GEMINI));
    await s.signIn(C, me(WITH_GEMINI));
    assert.deepEqual(s.current?.providers, WITH_GEMINI);
    await s.signIn(C, me());
    assert.deepEqual(s.current?.providers, []);

    const secrets = new Secrets();
    const state = new State();
    await secrets.store(STORAGE.key, KEY);
    await state.update(STORAGE.url, URL);
    const offline = new Session(secrets, state, () => Promise.reject(new Error('ECONNREFUSED')));
    assert.equal(await offline.restore(), 'restored-offline');
    assert.equal(offline.current?.providers, null);
    assert.equal(offline.noteMe(me(WITH_GEMINI)), true);
    assert.deepEqual(offline.current?.providers, WITH_GEMINI);
    assert.equal(offline.noteMe(me()), false, 'known already: kept');
    assert.deepEqual(offline.current?.providers, WITH_GEMINI);
  });
});
