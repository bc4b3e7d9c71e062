import path from 'node:path';
import { homeDir } from '../home-dir';

type Env = Record<string, string | undefined>;

/**
 * Where Claude Code keeps its state: `$CLAUDE_CONFIG_DIR/.claude.json` when that is set (it then
 * replaces the home one entirely; checked with claude 2.1.197), otherwise `~/.claude.json`.
 */
export function claudeConfigPath(env: Env = process.env): string {
  const dir = env.CLAUDE_CONFIG_DIR?.trim();
  if (dir) return path.join(dir, '.claude.json');
  return path.join(homeDir(env), '.claude.json');
}

/**
 * The key Claude Code files a folder's flags under in `projects`: the absolute path, with forward
 * slashes on Windows (that is how claude writes it there).
 */
export function claudeProjectKey(folder: string, platform: NodeJS.Platform = process.platform): string {
  const abs = platform === 'win32' ? path.win32.resolve(folder) : path.posix.resolve(folder);
  return platform === 'win32' ? abs.replace(/\\/g, '/') : abs;
}

export interface ClaudeReady {
  /** Folders whose "Quick safety check" is answered yes: VS Code's trusted workspace folders. */
  trustedFolders: readonly string[];
  platform?: NodeJS.Platform;
}

export type ClaudeEditResult = { ok: true; text: string; changed: boolean } | { ok: false; message: string };

export type Json = Record<string, unknown>;

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The indentation claude (or the user) used, so a rewrite changes only the lines it must. */
function indentOf(text: string): string | number {
  const m = /^\{\s*\n([ \t]+)"/.exec(text);
  return m?.[1] ?? 2;
}

/**
 * `.claude.json` as an object ({} for an empty file). Text that is not a JSON object is refused,
 * with a message, never replaced: claude keeps its own state there.
 */
export function parseClaudeConfig(
  original: string,
): { ok: true; config: Json } | { ok: false; message: string } {
  if (original.trim() === '') return { ok: true, config: {} };
  let parsed: unknown;
  try {
    parsed = JSON.parse(original);
  } catch (err) {
    return {
      ok: false,
      message: `the Claude Code config is not valid JSON (${(err as Error).message}); fix or remove it first.`,
    };
  }
  if (!isObject(parsed))
    return { ok: false, message: 'the Claude Code config is not a JSON object; left as it is.' };
  return { ok: true, config: parsed };
}

/** The config as text again, in the original's indentation and line endings. */
export function renderClaudeConfig(config: Json, original: string): string {
  const eol = original.includes('\r\n') ? '\r\n' : '\n';
  return `${JSON.stringify(config, null, indentOf(original)).replace(/\n/g, eol)}${eol}`;
}

/**
 * Marks Claude Code's onboarding done (`hasCompletedOnboarding`, which skips the theme picker) and
 * accepts the trust question for each folder (`projects[folder].hasTrustDialogAccepted`), keeping
 * every other key and value: claude rewrites this file itself and keeps its own state in it. Text
 * that is not a JSON object is refused, never replaced.
 */
export function withClaudeReady(original: string, ready: ClaudeReady): ClaudeEditResult {
  const parsed = parseClaudeConfig(original);
  if (!parsed.ok) return parsed;
  const config = parsed.config;
  const projects = config.projects ?? {};
  if (!isObject(projects)) {
    return {
      ok: false,
      message: 'the Claude Code config has a "projects" that is not an object; left as it is.',
    };
  }
  let changed = config.hasCompletedOnboarding !== true;
  config.hasCompletedOnboarding = true;
  for (const folder of ready.trustedFolders) {
    const key = claudeProjectKey(folder, ready.platform);
    const entry = projects[key] ?? {};
    if (!isObject(entry)) {
      return {
        ok: false,
        message: `the Claude Code config's entry for ${key} is not an object; left as it is.`,
      };
    }
    if (entry.hasTrustDialogAccepted !== true) changed = true;
    projects[key] = { ...entry, hasTrustDialogAccepted: true };
  }
  if (ready.trustedFolders.length > 0) config.projects = projects;
  if (!changed) return { ok: true, text: original, changed: false };
  return { ok: true, text: renderClaudeConfig(config, original), changed: true };
}
