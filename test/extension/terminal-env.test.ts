/* biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${url} and ${key} are the setting's placeholders, not template literals */
import assert from 'node:assert/strict';
import { computeTerminalEnv, DEFAULT_TERMINAL_ENV, withOwnCredential } from '../../extension/terminal/env';
import {
  applyTerminalEnv,
  clearTerminalEnv,
  type EnvCollection,
} from '../../extension/terminal/terminal-env';
import { KEY, URL } from './fixtures';

/** What VS Code's EnvironmentVariableCollection would hold. */
class FakeCollection implements EnvCollection {
  persistent = true;
  description: EnvCollection['description'] = undefined;
  readonly vars = new Map<string, string>();
  clear(): void {
    this.vars.clear();
  }
  replace(name: string, value: string): void {
    this.vars.set(name, value);
  }
}

const C = { url: URL, key: KEY };

describe('extension: terminal environment', () => {
  it('by default points Anthropic and OpenAI clients at the bridge with the bridge key', () => {
    const env = computeTerminalEnv(undefined, C);
    assert.deepEqual(env.problems, []);
    assert.deepEqual(Object.fromEntries(env.vars), {
      ANTHROPIC_BASE_URL: `${URL}/anthropic`,
      ANTHROPIC_AUTH_TOKEN: KEY,
      OPENAI_BASE_URL: `${URL}/openai/v1`,
      OPENAI_API_KEY: KEY,
      COPILOT_PROVIDER_BASE_URL: `${URL}/anthropic`,
      COPILOT_PROVIDER_TYPE: 'anthropic',
      COPILOT_PROVIDER_API_KEY: KEY,
      COPILOT_PROVIDER_HEADERS: 'x-aibridge-client: copilot-cli',
      COPILOT_MODEL: 'claude-sonnet-4-5',
    });
    assert.deepEqual(
      Object.keys(DEFAULT_TERMINAL_ENV),
      env.vars.map(([n]) => n),
    );
  });

  it('the setting replaces the list: templates with ${url} and ${key}, null to leave one out', () => {
    const env = computeTerminalEnv(
      {
        ANTHROPIC_BASE_URL: '${url}/anthropic',
        ANTHROPIC_API_KEY: '${key}',
        OPENAI_API_KEY: null,
        MY_PROXY_HINT: 'bridge=${url};',
      },
      C,
    );
    assert.deepEqual(env.vars, [
      ['ANTHROPIC_BASE_URL', `${URL}/anthropic`],
      ['ANTHROPIC_API_KEY', KEY],
      ['MY_PROXY_HINT', `bridge=${URL};`],
    ]);
  });

  it('skips bad entries with a reason, and falls back to the defaults for a setting of the wrong shape', () => {
    const env = computeTerminalEnv({ 'BAD-NAME': '${key}', NUM: 3, ODD: '${token}', GOOD: '${key}' }, C);
    assert.deepEqual(env.vars, [['GOOD', KEY]]);
    assert.equal(env.problems.length, 3);
    assert.match(env.problems.join('\n'), /BAD-NAME.*not a valid/);
    assert.match(env.problems.join('\n'), /unknown placeholder \$\{token\}/);
    const fallback = computeTerminalEnv(['nope'], C);
    assert.equal(fallback.vars.length, Object.keys(DEFAULT_TERMINAL_ENV).length);
    assert.equal(fallback.problems.length, 1);
  });

  it("a workspace's setting cannot put a command link in the warning: names and placeholders show as text", () => {
    // How VS Code finds links in a notification's message (src/vs/base/common/linkedText.ts).
    const link = /\[([^\]]+)\]\(((?:https?:\/\/|command:|file:)[^)\s]+)(?: (["'])(.+?)(\3))?\)/i;
    const cmd = 'command:workbench.action.terminal.sendSequence?%7B%22text%22%3A%22id%5Cn%22%7D';
    const env = computeTerminalEnv(
      { [`[Fix the setting](${cmd})`]: '${key}', [`[Docs](${cmd}) `]: 3, ODD: `\${[Fix](${cmd})}` },
      C,
    );
    assert.equal(env.problems.length, 3);
    for (const p of env.problems) assert.doesNotMatch(`AI Bridge: ${p}`, link, p);
    assert.match(env.problems[0]!.replace(/\u200b/g, ''), /^"\[Fix the setting\]\(command:/);
  });

  it('applies by clearing then replacing, not persisted (the key stays out of workspace storage); sign-out clears', () => {
    const coll = new FakeCollection();
    coll.replace('STALE', 'x');
    applyTerminalEnv(coll, computeTerminalEnv(undefined, C), 'AI Bridge');
    assert.equal(coll.persistent, false);
    assert.equal(coll.vars.has('STALE'), false);
    assert.equal(coll.vars.get('OPENAI_API_KEY'), KEY);
    assert.equal(coll.description, 'AI Bridge');
    clearTerminalEnv(coll);
    assert.equal(coll.vars.size, 0);
    assert.equal(coll.description, undefined);
  });
  it("bring your own key: the user's own credentials stay, the bridge key goes as X-AIBridge-Key", () => {
    const env = withOwnCredential(computeTerminalEnv(undefined, C), C);
    const vars = Object.fromEntries(env.vars);
    assert.equal(vars.ANTHROPIC_BASE_URL, `${URL}/anthropic`);
    assert.equal(vars.OPENAI_BASE_URL, `${URL}/openai/v1`);
    // Not set: the terminal keeps the user's own ANTHROPIC_API_KEY / subscription and OPENAI_API_KEY.
    assert.equal(vars.ANTHROPIC_AUTH_TOKEN, undefined);
    assert.equal(vars.ANTHROPIC_API_KEY, undefined);
    assert.equal(vars.OPENAI_API_KEY, undefined);
    assert.equal(vars.ANTHROPIC_CUSTOM_HEADERS, `X-AIBridge-Key: ${KEY}`);
    assert.equal(vars.AIBRIDGE_KEY, KEY, "the variable Codex's env_http_headers names");
    // Copilot CLI has no second header for the bridge key: it keeps the bridge key as before.
    assert.equal(vars.COPILOT_PROVIDER_API_KEY, KEY);
  });

  it('bring your own key keeps other custom headers and a credential the user set to their own', () => {
    const env = withOwnCredential(
      computeTerminalEnv(
        {
          ANTHROPIC_BASE_URL: '${url}/anthropic',
          ANTHROPIC_API_KEY: 'sk-ant-my-own',
          ANTHROPIC_CUSTOM_HEADERS: 'x-team: red\nX-AIBridge-Key: stale',
        },
        C,
      ),
      C,
    );
    const vars = Object.fromEntries(env.vars);
    assert.equal(vars.ANTHROPIC_API_KEY, 'sk-ant-my-own');
    assert.equal(vars.ANTHROPIC_CUSTOM_HEADERS, `x-team: red\nX-AIBridge-Key: ${KEY}`);
  });
});
