import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  AUTH_PROVIDER_ID,
  AUTH_PROVIDER_LABEL,
  COMMANDS,
  CONTEXT,
  MCP_PROVIDER_ID,
  MCP_PROVIDER_LABEL,
  SETTINGS,
  VIEW_CONTAINER,
  VIEWS,
} from '../../extension/ids';
import { DEFAULT_TERMINAL_ENV } from '../../extension/terminal/env';

interface Manifest {
  name: string;
  publisher: string;
  main: string;
  engines: { vscode: string };
  activationEvents: string[];
  contributes: {
    authentication: { id: string; label: string }[];
    commands: { command: string; title: string; category?: string }[];
    viewsContainers: { activitybar: { id: string }[] };
    views: Record<string, { id: string }[]>;
    configuration: { properties: Record<string, { default?: unknown; scope?: string }> };
    menus: Record<string, { command: string; when?: string }[]>;
    mcpServerDefinitionProviders: { id: string; label: string }[];
  };
}

const pkg = JSON.parse(fs.readFileSync('package.json', 'utf8')) as Manifest;

describe('extension: ids match package.json', () => {
  it('a repository cannot choose where the key goes: every setting that writes it, routes it or turns its undo off is the user’s own', () => {
    // A checked-in .vscode/settings.json may set any window-scoped setting: these would write the
    // key into IDE clients' files, send agents with the developer's own key, or skip the sign-out's undo.
    for (const id of [
      SETTINGS.url,
      SETTINGS.terminalEnv,
      SETTINGS.prepareAgents,
      SETTINGS.byok,
      SETTINGS.mcpGateway,
      SETTINGS.ideClients,
    ])
      assert.equal(pkg.contributes.configuration.properties[id]?.scope, 'application', id);
  });

  it('every command in COMMANDS is contributed, and nothing else', () => {
    assert.deepEqual(pkg.contributes.commands.map((c) => c.command).sort(), Object.values(COMMANDS).sort());
    for (const c of pkg.contributes.commands) assert.equal(c.category, 'AI Bridge', c.command);
  });

  it('menus name only known commands and context keys', () => {
    const known = new Set<string>(Object.values(COMMANDS));
    for (const [menu, entries] of Object.entries(pkg.contributes.menus)) {
      for (const e of entries) {
        assert.ok(known.has(e.command), `${menu}: ${e.command}`);
        for (const key of e.when?.match(/aibridge\.[A-Za-z]+/g) ?? []) {
          assert.ok(
            (Object.values(CONTEXT) as string[]).includes(key) ||
              Object.values(VIEWS).some((v) => v.startsWith(key)),
            `${menu}: ${key}`,
          );
        }
      }
    }
  });

  it('the view container, view and settings are the ones the code uses', () => {
    assert.deepEqual(
      pkg.contributes.viewsContainers.activitybar.map((c) => c.id),
      [VIEW_CONTAINER],
    );
    assert.deepEqual(
      pkg.contributes.views[VIEW_CONTAINER]?.map((v) => v.id),
      Object.values(VIEWS),
    );
    assert.deepEqual(
      Object.keys(pkg.contributes.configuration.properties).sort(),
      Object.values(SETTINGS).sort(),
    );
    assert.deepEqual(
      pkg.contributes.configuration.properties[SETTINGS.terminalEnv]?.default,
      DEFAULT_TERMINAL_ENV,
    );
  });

  it('activates lazily, on VS Code 1.100, from the bundle, as aibridge.ai-bridge (the URI handler authority)', () => {
    assert.deepEqual(pkg.activationEvents, [
      'onStartupFinished',
      'onUri',
      'onAuthenticationRequest:aibridge',
    ]);
    // registerAuthenticationProvider needs the provider declared, under the id the code registers.
    assert.deepEqual(pkg.contributes.authentication, [{ id: AUTH_PROVIDER_ID, label: AUTH_PROVIDER_LABEL }]);
    // registerMcpServerDefinitionProvider (VS Code ≥ 1.101) needs the provider declared, under the id the code registers.
    assert.deepEqual(pkg.contributes.mcpServerDefinitionProviders, [
      { id: MCP_PROVIDER_ID, label: MCP_PROVIDER_LABEL },
    ]);
    assert.equal(pkg.engines.vscode, '^1.100.0');
    assert.equal(pkg.main, './dist/extension.cjs');
    assert.equal(`${pkg.publisher}.${pkg.name}`, 'aibridge.ai-bridge');
  });
});
