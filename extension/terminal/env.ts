import { geminiInstance } from '../../shared/gemini-instance';
import type { ProviderInstanceInfo } from '../../shared/identity';
import type { Credentials } from '../auth/sign-in';
import { plainNotificationText } from '../format';

/* biome-ignore-start lint/suspicious/noTemplateCurlyInString: ${url} and ${key} are this setting's own placeholders */
/**
 * What every new terminal gets while signed in (`aibridge.terminalEnv`): variable → template, where
 * `${url}` is the bridge's base URL and `${key}` the bridge key.
 */
export const DEFAULT_TERMINAL_ENV: Readonly<Record<string, string>> = Object.freeze({
  ANTHROPIC_BASE_URL: '${url}/anthropic',
  ANTHROPIC_AUTH_TOKEN: '${key}',
  OPENAI_BASE_URL: '${url}/openai/v1',
  OPENAI_API_KEY: '${key}',
  // Copilot CLI's BYOK provider (checked with @github/copilot 1.0.102; it needs an explicit model).
  COPILOT_PROVIDER_BASE_URL: '${url}/anthropic',
  COPILOT_PROVIDER_TYPE: 'anthropic',
  COPILOT_PROVIDER_API_KEY: '${key}',
  COPILOT_PROVIDER_HEADERS: 'x-aibridge-client: copilot-cli',
  COPILOT_MODEL: 'claude-sonnet-4-5',
});

/**
 * The variables that depend on what the bridge serves (`providers` of `GET /api/v1/me`): Gemini CLI's
 * base URL and key, only when an instance speaks the Gemini API, so that without one Gemini CLI's
 * own sign-in is untouched.
 */
export function servedTerminalEnv(
  providers: readonly ProviderInstanceInfo[] | null | undefined,
): Readonly<Record<string, string>> {
  const gemini = geminiInstance(providers);
  if (gemini === undefined) return {};
  // Gemini CLI appends `/v1beta/models/…` to GOOGLE_GEMINI_BASE_URL (checked with 0.61).
  return { GOOGLE_GEMINI_BASE_URL: `\${url}/${gemini}`, GEMINI_API_KEY: '${key}' };
}
/* biome-ignore-end lint/suspicious/noTemplateCurlyInString: the placeholders end here */

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PLACEHOLDER_RE = /\$\{([^}]*)\}/g;

export interface TerminalEnv {
  /** In a stable order (as configured). */
  vars: [name: string, value: string][];
  /**
   * Entries that were skipped, and why (shown once as a warning notification). The setting may come
   * from a workspace's `.vscode/settings.json`, so names in them are made plain text, never links.
   */
  problems: string[];
}

/**
 * The variables for `environmentVariableCollection`. `setting` is the raw configuration value:
 * anything that is not an object of strings falls back to the defaults; an entry set to null or ""
 * is left out. The user's object replaces {@link DEFAULT_TERMINAL_ENV}, but the variables of what
 * the bridge serves (`providers`, {@link servedTerminalEnv}) come on top of either, unless the
 * object names them: they follow the bridge, which a list written once cannot.
 */
export function computeTerminalEnv(
  setting: unknown,
  c: Credentials,
  providers?: readonly ProviderInstanceInfo[] | null,
): TerminalEnv {
  const problems: string[] = [];
  let chosen: Record<string, unknown> = DEFAULT_TERMINAL_ENV;
  if (setting !== undefined && setting !== null) {
    if (typeof setting === 'object' && !Array.isArray(setting)) chosen = setting as Record<string, unknown>;
    else problems.push('aibridge.terminalEnv must be an object of VARIABLE: "template"; using the defaults.');
  }
  const templates: Record<string, unknown> = { ...chosen };
  for (const [name, template] of Object.entries(servedTerminalEnv(providers)))
    if (!Object.hasOwn(chosen, name)) templates[name] = template;
  const vars: [string, string][] = [];
  for (const [name, template] of Object.entries(templates)) {
    if (template === null || template === '') continue;
    if (!NAME_RE.test(name)) {
      problems.push(`"${plainNotificationText(name)}" is not a valid environment variable name; skipped.`);
      continue;
    }
    if (typeof template !== 'string') {
      problems.push(`${plainNotificationText(name)}: the template must be a string; skipped.`);
      continue;
    }
    let unknown: string | undefined;
    const value = template.replace(PLACEHOLDER_RE, (whole, p: string) => {
      if (p === 'url') return c.url;
      if (p === 'key') return c.key;
      unknown ??= whole;
      return whole;
    });
    if (unknown) {
      problems.push(
        `${name}: unknown placeholder ${plainNotificationText(unknown)} (use \${url} or \${key}); skipped.`,
      );
      continue;
    }
    vars.push([name, value]);
  }
  return { vars, problems };
}

/**
 * With `aibridge.byok`: the variable Codex's provider table names in `env_http_headers`, so Codex
 * sends the bridge key as `X-AIBridge-Key` while `OPENAI_API_KEY` stays the user's own.
 */
export const BRIDGE_KEY_VAR = 'AIBRIDGE_KEY';
/** The header the bridge reads its key from when the provider's auth headers carry the user's own credential. */
export const BRIDGE_KEY_HEADER = 'X-AIBridge-Key';
/** Variables that would carry the bridge key as the provider credential: left out with BYOK. */
const CREDENTIAL_VARS = ['ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_API_KEY', 'OPENAI_API_KEY', 'GEMINI_API_KEY'];
/** Gemini CLI's extra headers: `Name: value` entries separated by commas (checked with 0.61). */
const GEMINI_HEADERS_VAR = 'GEMINI_CLI_CUSTOM_HEADERS';

/** `list` (entries split by `separator`) without any bridge-key entry, then the bridge key's. */
function withBridgeKeyHeader(list: string | undefined, separator: RegExp, join: string, key: string): string {
  const prefix = `${BRIDGE_KEY_HEADER.toLowerCase()}:`;
  const kept = (list ?? '')
    .split(separator)
    .filter((l) => l.trim() !== '' && !l.trim().toLowerCase().startsWith(prefix));
  return [...kept, `${BRIDGE_KEY_HEADER}: ${key}`].join(join);
}

/**
 * Bring your own key (`aibridge.byok`, docs/extension.md): the agents keep the user's own provider
 * credential (their `ANTHROPIC_API_KEY`, Claude subscription or `OPENAI_API_KEY`) and send the bridge
 * key beside it: Claude Code through `ANTHROPIC_CUSTOM_HEADERS` ("Name: value" lines), Codex through
 * the `AIBRIDGE_KEY` variable its provider table names, Gemini CLI (when the terminal points it at the
 * bridge) through `GEMINI_CLI_CUSTOM_HEADERS` (comma-separated). A credential variable is dropped only
 * when it holds the bridge key, so one the user set to their own key in the template stays.
 */
export function withOwnCredential(env: TerminalEnv, c: Credentials): TerminalEnv {
  const vars: [string, string][] = [];
  let claudeHeaders: string | undefined;
  let geminiHeaders: string | undefined;
  for (const [name, value] of env.vars) {
    if (CREDENTIAL_VARS.includes(name) && value === c.key) continue;
    if (name === 'ANTHROPIC_CUSTOM_HEADERS') claudeHeaders = value;
    else if (name === GEMINI_HEADERS_VAR) geminiHeaders = value;
    else if (name !== BRIDGE_KEY_VAR) vars.push([name, value]);
  }
  vars.push(['ANTHROPIC_CUSTOM_HEADERS', withBridgeKeyHeader(claudeHeaders, /\n/, '\n', c.key)]);
  vars.push([BRIDGE_KEY_VAR, c.key]);
  // Only a terminal that sends Gemini CLI to the bridge gets the header: elsewhere it would leak the key.
  if (vars.some(([name]) => name === 'GOOGLE_GEMINI_BASE_URL'))
    vars.push([GEMINI_HEADERS_VAR, withBridgeKeyHeader(geminiHeaders, /,(?=\s*[^,:]+:)/, ',', c.key)]);
  else if (geminiHeaders !== undefined) vars.push([GEMINI_HEADERS_VAR, geminiHeaders]);
  return { vars, problems: env.problems };
}
