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
 * Which agent or SDK sent a request, from its headers. Agents first (they are built on the SDKs and
 * send the SDK headers too), then the Stainless-generated SDKs, which identify themselves with
 * `x-stainless-lang` and a `Vendor/Lang version` user agent.
 */
export function detectClient(headers: IncomingHttpHeaders): string {
  const ua = header(headers, 'user-agent');
  if (ua.startsWith('claude-cli/')) return 'claude-code';
  const originator = header(headers, 'originator');
  if (originator.startsWith('codex') || ua.startsWith('codex_') || ua.startsWith('codex-')) return 'codex';
  const rawLang = header(headers, 'x-stainless-lang').toLowerCase();
  if (rawLang) {
    const lang = SDK_LANGS.has(rawLang) ? rawLang : 'other';
    const vendor = /^([A-Za-z]{1,32})\//.exec(ua)?.[1]?.toLowerCase();
    if (!vendor) return `sdk-${lang}`;
    return `${SDK_VENDORS.has(vendor) ? vendor : 'other'}-sdk-${lang}`;
  }
  return 'unknown';
}
