import type { Credentials } from '../auth/sign-in';

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
/* biome-ignore-end lint/suspicious/noTemplateCurlyInString: the placeholders end here */

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PLACEHOLDER_RE = /\$\{([^}]*)\}/g;

export interface TerminalEnv {
  /** In a stable order (as configured). */
  vars: [name: string, value: string][];
  /** Entries that were skipped, and why (shown once as a warning). */
  problems: string[];
}

/**
 * The variables for `environmentVariableCollection`. `setting` is the raw configuration value:
 * anything that is not an object of strings falls back to the defaults; an entry set to null or ""
 * is left out.
 */
export function computeTerminalEnv(setting: unknown, c: Credentials): TerminalEnv {
  const problems: string[] = [];
  let templates: Record<string, unknown> = DEFAULT_TERMINAL_ENV;
  if (setting !== undefined && setting !== null) {
    if (typeof setting === 'object' && !Array.isArray(setting))
      templates = setting as Record<string, unknown>;
    else problems.push('aibridge.terminalEnv must be an object of VARIABLE: "template"; using the defaults.');
  }
  const vars: [string, string][] = [];
  for (const [name, template] of Object.entries(templates)) {
    if (template === null || template === '') continue;
    if (!NAME_RE.test(name)) {
      problems.push(`"${name}" is not a valid environment variable name; skipped.`);
      continue;
    }
    if (typeof template !== 'string') {
      problems.push(`${name}: the template must be a string; skipped.`);
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
      problems.push(`${name}: unknown placeholder ${unknown} (use \${url} or \${key}); skipped.`);
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
const CREDENTIAL_VARS = ['ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_API_KEY', 'OPENAI_API_KEY'];

/**
 * Bring your own key (`aibridge.byok`, docs/extension.md): the agents keep the user's own provider
 * credential (their `ANTHROPIC_API_KEY`, Claude subscription or `OPENAI_API_KEY`) and send the bridge
 * key beside it: Claude Code through `ANTHROPIC_CUSTOM_HEADERS` ("Name: value" lines), Codex through
 * the `AIBRIDGE_KEY` variable its provider table names. A credential variable is dropped only when it
 * holds the bridge key, so one the user set to their own key in the template stays.
 */
export function withOwnCredential(env: TerminalEnv, c: Credentials): TerminalEnv {
  const header = `${BRIDGE_KEY_HEADER}: ${c.key}`;
  const vars: [string, string][] = [];
  let headers: string | undefined;
  for (const [name, value] of env.vars) {
    if (CREDENTIAL_VARS.includes(name) && value === c.key) continue;
    if (name === 'ANTHROPIC_CUSTOM_HEADERS') {
      headers = value;
      continue;
    }
    if (name === BRIDGE_KEY_VAR) continue;
    vars.push([name, value]);
  }
  const kept = (headers ?? '')
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.toLowerCase().startsWith(`${BRIDGE_KEY_HEADER.toLowerCase()}:`));
  vars.push(['ANTHROPIC_CUSTOM_HEADERS', [...kept, header].join('\n')]);
  vars.push([BRIDGE_KEY_VAR, c.key]);
  return { vars, problems: env.problems };
}
