import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { tempDir } from './bridge';
import { type RunResult, run } from './run';

const require = createRequire(import.meta.url);

/** The real Claude Code binary the npm package installs (not the shell shim, so no npm in the path). */
export const CLAUDE = path.join(
  path.dirname(require.resolve('@anthropic-ai/claude-code/package.json')),
  'bin',
  'claude.exe',
);

/** The real codex launcher script, run with this node so the test does not depend on `PATH`. */
export const CODEX = path.join(
  path.dirname(require.resolve('@openai/codex/package.json')),
  'bin',
  'codex.js',
);

/** One run of claude as a bridge user: the bridge it talks to, the user's key, and a throwaway HOME. */
export interface ClaudeRun {
  bridgeUrl: string;
  key: string;
  home: string;
}

/**
 * What a user sets to point claude at the bridge; nothing else of the parent's env leaks in, so
 * the developer's own login or settings never decide the test. Non-essential traffic and the
 * auto-updater are off: the only requests out are the ones the test asserts on.
 */
export function claudeEnv({ bridgeUrl, key, home }: ClaudeRun): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: home,
    TMPDIR: home,
    ANTHROPIC_BASE_URL: `${bridgeUrl}/anthropic`,
    ANTHROPIC_AUTH_TOKEN: key,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_AUTOUPDATER: '1',
    CI: '1',
  };
}

/** Runs `claude <args>` in `home` and asserts it exited 0 (its output in the message if not). */
export async function runClaude(who: ClaudeRun, args: string[]): Promise<RunResult> {
  const res = await run(CLAUDE, args, claudeEnv(who), who.home);
  assert.equal(res.code, 0, `claude failed: ${res.stderr}\n${res.stdout}`);
  return res;
}

export interface CodexConfig {
  /** The model codex asks for; a provider instance may name its own. */
  model?: string;
  /**
   * More config lines. They go after the top-level keys and before the provider table, so they may
   * hold top-level keys (which TOML forbids after a table) and tables of their own.
   */
  extra?: string[];
}

/**
 * A throwaway HOME whose `.codex/config.toml` makes the bridge at `baseUrl` codex's model provider.
 * codex ignores OPENAI_BASE_URL for its built-in provider, so users define one for the bridge.
 */
export async function codexHome(
  baseUrl: string,
  { model = 'gpt-5-codex', extra = [] }: CodexConfig = {},
): Promise<string> {
  const home = await tempDir('aibridge-codex-home-');
  await fs.mkdir(path.join(home, '.codex'));
  await fs.writeFile(
    path.join(home, '.codex', 'config.toml'),
    [
      `model = "${model}"`,
      'model_provider = "aibridge"',
      ...extra,
      '',
      '[model_providers.aibridge]',
      'name = "AI Bridge"',
      `base_url = "${baseUrl}"`,
      'env_key = "OPENAI_API_KEY"',
      'wire_api = "responses"',
      '',
    ].join('\n'),
  );
  return home;
}

/** One run of codex: a home from `codexHome`, the user's key, and any env its config refers to. */
export interface CodexRun {
  home: string;
  key: string;
  env?: NodeJS.ProcessEnv;
}

/** Runs `codex exec <prompt>` outside a git repo and asserts it exited 0 (its output in the message if not). */
export async function runCodexExec({ home, key, env = {} }: CodexRun, prompt: string): Promise<RunResult> {
  const res = await run(
    process.execPath,
    [CODEX, 'exec', '--skip-git-repo-check', prompt],
    {
      PATH: process.env.PATH,
      HOME: home,
      TMPDIR: home,
      CODEX_HOME: path.join(home, '.codex'),
      OPENAI_API_KEY: key,
      ...env,
      CI: '1',
    },
    home,
  );
  assert.equal(res.code, 0, `codex failed: ${res.stderr}\n${res.stdout}`);
  return res;
}
