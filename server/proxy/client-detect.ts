import type { IncomingHttpHeaders } from 'node:http';

function header(headers: IncomingHttpHeaders, name: string): string {
  const v = headers[name];
  return (Array.isArray(v) ? v[0] : v) ?? '';
}

/**
 * Names the client label may take, so members cannot mint metric labels and record values with
 * headers they choose: the Stainless SDKs' languages and the vendors that publish them. Anything
 * else is `other`.
 */
const SDK_LANGS: ReadonlySet<string> = new Set([
  'js',
  'python',
  'go',
  'java',
  'kotlin',
  'ruby',
  'csharp',
  'php',
  'rust',
  'swift',
  'terraform',
  'cli',
]);
const SDK_VENDORS: ReadonlySet<string> = new Set(['anthropic', 'openai']);

/**
 * The header a client the bridge's extension configures names itself in (VS Code's chat, Copilot
 * CLI through `COPILOT_PROVIDER_HEADERS`, Continue's `requestOptions.headers`, Roo and Kilo Code's
 * `openAiHeaders`). Only the names below are taken from it, so it mints no
 * new labels.
 */
export const CLIENT_HEADER = 'x-aibridge-client';
const DECLARABLE_CLIENTS: ReadonlySet<string> = new Set([
  'vscode-chat',
  'copilot-cli',
  'continue',
  'roo-code',
  'kilo-code',
]);

/**
 * Which agent or SDK sent a request, from its headers. Agents first (they are built on the SDKs and
 * send the SDK headers too), then the Stainless-generated SDKs, which identify themselves with
 * `x-stainless-lang` and a `Vendor/Lang version` user agent.
 */
export function detectClient(headers: IncomingHttpHeaders): string {
  const declared = header(headers, CLIENT_HEADER);
  if (DECLARABLE_CLIENTS.has(declared)) return declared;
  const ua = header(headers, 'user-agent');
  if (ua.startsWith('claude-cli/')) return 'claude-code';
  // Copilot CLI talks to a BYOK provider through the plain SDKs, adding only its own headers: the
  // turn the user typed carries `x-initiator: user` and `x-interaction-type`, the turns it takes
  // on its own (a tool's result sent back) `x-initiator: agent` alone.
  const initiator = header(headers, 'x-initiator');
  if (initiator === 'agent' || (initiator !== '' && header(headers, 'x-interaction-type') !== ''))
    return 'copilot-cli';
  // Gemini CLI: `GeminiCLI/<version>[/<model>] (<platform>; <arch>)`; since 0.6x the surface is
  // named too (`GeminiCLI-tui/0.61.0/gemini-3.1-pro-preview (linux; x64; terminal)`).
  if (/^GeminiCLI(-[a-z]+)?\//.test(ua)) return 'gemini-cli';
  const originator = header(headers, 'originator');
  if (originator.startsWith('codex') || ua.startsWith('codex_') || ua.startsWith('codex-')) return 'codex';
  const rawLang = header(headers, 'x-stainless-lang').toLowerCase();
  if (rawLang) {
    const lang = SDK_LANGS.has(rawLang) ? rawLang : 'other';
    const vendor = /^([A-Za-z]{1,32})\//.exec(ua)?.[1]?.toLowerCase();
    if (!vendor) return `sdk-${lang}`;
    return `${SDK_VENDORS.has(vendor) ? vendor : 'other'}-sdk-${lang}`;
  }
  // Google's genai SDKs: `x-goog-api-client: google-genai-sdk/<version> gl-<lang>/<version>`.
  const goog = header(headers, 'x-goog-api-client');
  if (goog.startsWith('google-genai-sdk/')) {
    const gl = /\bgl-([a-z]+)\//.exec(goog)?.[1];
    return `google-sdk-${gl === 'node' ? 'js' : gl && SDK_LANGS.has(gl) ? gl : 'other'}`;
  }
  return 'unknown';
}
