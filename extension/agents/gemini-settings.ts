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

/** `settings.json` as an object ({} for an empty file); anything else is refused, never replaced. */
function parseSettings(original: string): { ok: true; settings: Json } | { ok: false; message: string } {
  if (original.trim() === '') return { ok: true, settings: {} };
  let parsed: unknown;
  try {
    parsed = JSON.parse(original);
  } catch {
    // The CLI accepts comments here; editing around them is not worth the risk of losing one.
    return {
      ok: false,
      message: `not plain JSON (comments?); add "security": {"auth": {"selectedType": "${GEMINI_API_KEY_AUTH}"}} yourself to use the bridge's key.`,
    };
  }
  if (!isObject(parsed)) return { ok: false, message: 'not a JSON object; left as it is.' };
  return { ok: true, settings: parsed };
}

/**
 * Chooses the API-key sign-in (`security.auth.selectedType: "gemini-api-key"`) when the user has
 * chosen none: without it `gemini -p` refuses to run and interactive `gemini` asks how to sign in,
 * and only that type sends `GEMINI_API_KEY` to `GOOGLE_GEMINI_BASE_URL`. A type the user chose
 * (Google login, Vertex AI, also the pre-0.3 top-level `selectedAuthType`) is theirs and stays; every
 * other key and the file's indentation stay too.
 */
export function withApiKeyAuth(original: string): ClaudeEditResult {
  const parsed = parseSettings(original);
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
