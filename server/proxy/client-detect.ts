import type { IncomingHttpHeaders } from 'node:http';

function header(headers: IncomingHttpHeaders, name: string): string {
  const v = headers[name];
  return (Array.isArray(v) ? v[0] : v) ?? '';
}

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
  const lang = header(headers, 'x-stainless-lang').toLowerCase();
  if (lang) {
    const vendor = /^([A-Za-z]+)\//.exec(ua)?.[1]?.toLowerCase();
    return vendor ? `${vendor}-sdk-${lang}` : `sdk-${lang}`;
  }
  return 'unknown';
}
