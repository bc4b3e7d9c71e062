import type { ProviderAdapter } from '../providers/types';

/**
 * For a POST no route serves that ends in a metered API's path (`/v1/messages`,
 * `/chat/completions`, `/responses`): the client was given a base URL without the provider's
 * prefix, or with a part too many or too few (`<bridge>`, `<bridge>/openai`,
 * `<bridge>/anthropic/v1`). Agents take a 404 for an unknown model (Claude Code, Copilot CLI) or
 * show the body alone (Codex), so the body says which base URL to give instead. Null: no API's
 * path ends the request's.
 */
export function baseUrlHint(
  adapters: readonly ProviderAdapter[],
  method: string,
  url: string,
): string | null {
  if (method !== 'POST') return null;
  const path = (url.split('?')[0] ?? '')
    .replace(/\/{2,}/g, '/')
    .replace(/(.)\/$/, '$1')
    .toLowerCase();
  for (const adapter of adapters) {
    for (const api of adapter.apis) {
      // Parameterised paths (Gemini's `:model:generateContent`) are not compared.
      if (api.path.includes(':')) continue;
      const served = `${adapter.prefix}${api.path}`.toLowerCase();
      if (path === served || !path.endsWith(api.path.toLowerCase())) continue;
      const given = path.slice(0, path.length - api.path.length);
      return (
        `The bridge serves this API at POST ${adapter.prefix}${api.path} (provider ${adapter.id}): give the ` +
        `client the base URL <bridge URL>${adapter.prefix}, not ${given === '' ? 'the bridge URL alone' : `<bridge URL>${given}`} (docs/api.md).`
      );
    }
  }
  return null;
}
