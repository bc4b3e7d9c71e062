import path from 'node:path';
import { homeDir } from '../home-dir';
import { type ClaudeEditResult, isObject, type Json, renderClaudeConfig } from './claude-config';

type Env = Record<string, string | undefined>;

/** The auth type that sends `GEMINI_API_KEY` to `GOOGLE_GEMINI_BASE_URL` (Gemini CLI's `AuthType.USE_GEMINI`). */
export const GEMINI_API_KEY_AUTH = 'gemini-api-key';

/**
 * Gemini CLI's folder: `$GEMINI_CLI_HOME/.gemini` when that is set (the CLI then takes it as its
 * home), otherwise `~/.gemini` (checked with @google/gemini-cli 0.61).
 */
export function geminiDir(env: Env = process.env): string {
  const home = env.GEMINI_CLI_HOME?.trim();
  return path.join(home || homeDir(env), '.gemini');
}

/** Gemini CLI's user settings, `~/.gemini/settings.json`. */
export function geminiSettingsPath(env: Env = process.env): string {
  return path.join(geminiDir(env), 'settings.json');
}

/**
 * Gemini CLI's trusted folders: `$GEMINI_CLI_TRUSTED_FOLDERS_PATH` when set, otherwise
 * `~/.gemini/trustedFolders.json`.
 */
export function geminiTrustedFoldersPath(env: Env = process.env): string {
  const file = env.GEMINI_CLI_TRUSTED_FOLDERS_PATH?.trim();
  return file || path.join(geminiDir(env), 'trustedFolders.json');
}

/**
 * One of Gemini CLI's JSON files as an object ({} for an empty file); anything else is refused,
 * never replaced. `byHand` says what the user can add themselves instead.
 */
function parseJsonFile(
  original: string,
  byHand: string,
): { ok: true; settings: Json } | { ok: false; message: string } {
  if (original.trim() === '') return { ok: true, settings: {} };
  let parsed: unknown;
  try {
    parsed = JSON.parse(original);
  } catch {
    // The CLI accepts comments here; editing around them is not worth the risk of losing one.
    return { ok: false, message: `not plain JSON (comments?); left as it is: add ${byHand} yourself.` };
  }
  if (!isObject(parsed)) return { ok: false, message: 'not a JSON object; left as it is.' };
  return { ok: true, settings: parsed };
}

/** The trust level that trusts a folder and everything below it. */
export const TRUST_FOLDER = 'TRUST_FOLDER';

/** How Gemini CLI compares paths: case-insensitively on Windows and macOS. */
function samePath(a: string, b: string, platform: NodeJS.Platform): boolean {
  return platform === 'win32' || platform === 'darwin' ? a.toLowerCase() === b.toLowerCase() : a === b;
}

/**
 * Trusts each folder (VS Code's trusted workspace folders) for Gemini CLI, `"<folder>": "TRUST_FOLDER"`,
 * so `gemini` neither asks nor, headless, refuses ("not running in a trusted directory"). Only a
 * folder the file has no entry for is added: the user's own answer (`DO_NOT_TRUST`) stays.
 */
export function withTrustedFolders(
  original: string,
  folders: readonly string[],
  platform: NodeJS.Platform = process.platform,
): ClaudeEditResult {
  const parsed = parseJsonFile(original, `"<folder>": "${TRUST_FOLDER}"`);
  if (!parsed.ok) return parsed;
  const rules = parsed.settings;
  let changed = false;
  for (const folder of folders) {
    if (Object.keys(rules).some((k) => samePath(k, folder, platform))) continue;
    rules[folder] = TRUST_FOLDER;
    changed = true;
  }
  if (!changed) return { ok: true, text: original, changed: false };
  return { ok: true, text: renderClaudeConfig(rules, original), changed: true };
}

/**
 * Chooses the API-key sign-in (`security.auth.selectedType: "gemini-api-key"`) when the user has
 * chosen none: without it `gemini -p` refuses to run and interactive `gemini` asks how to sign in,
 * and only that type sends `GEMINI_API_KEY` to `GOOGLE_GEMINI_BASE_URL`. A type the user chose
 * (Google login, Vertex AI, also the older top-level `selectedAuthType`) is theirs and stays; every
 * other key and the file's indentation stay too.
 */
export function withApiKeyAuth(original: string): ClaudeEditResult {
  const parsed = parseJsonFile(original, `"security": {"auth": {"selectedType": "${GEMINI_API_KEY_AUTH}"}}`);
  if (!parsed.ok) return parsed;
  const settings = parsed.settings;
  const security = settings.security ?? {};
  if (!isObject(security)) return { ok: false, message: '"security" is not an object; left as it is.' };
  const auth = security.auth ?? {};
  if (!isObject(auth)) return { ok: false, message: '"security.auth" is not an object; left as it is.' };
  if (auth.selectedType !== undefined || settings.selectedAuthType !== undefined)
    return { ok: true, text: original, changed: false };
  settings.security = { ...security, auth: { ...auth, selectedType: GEMINI_API_KEY_AUTH } };
  return { ok: true, text: renderClaudeConfig(settings, original), changed: true };
}
