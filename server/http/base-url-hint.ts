import type { ProviderAdapter } from '../providers/types';

/**
 * For a POST no route serves that ends in a metered API's path (`/v1/messages`,
 * `/chat/completions`, `/responses`): the client was given a base URL without the provider's
 * prefix, or with a part too many or too few (`<bridge>`, `<bridge>/openai`,
 * `<bridge>/anthropic/v1`). Agents take a 404 for an unknown model (Claude Code, Copilot CLI) or
 * show the body alone (Codex), so the body says which base URL to give instead. Null: no API's
 * path ends the request's. Gemini CLI, given `<bridge>` for `<bridge>/gemini`, prints a body that is
 * not in Google's shape as `[object Object]`: the hint's adapter gives the shape.
 */
export function baseUrlHint(
  adapters: readonly ProviderAdapter[],
  method: string,
  url: string,
): { message: string; adapter: ProviderAdapter } | null {
  if (method !== 'POST') return null;
  const path = (url.split('?')[0] ?? '')
    .replace(/\/{2,}/g, '/')
    .replace(/(.)\/$/, '$1')
    .toLowerCase();
  for (const adapter of adapters) {
    for (const api of adapter.apis) {
      const end = tailOf(api.path).exec(path);
      if (!end) continue;
      const given = path.slice(0, end.index);
      if (given === adapter.prefix.toLowerCase()) continue;
      return {
        adapter,
        message:
          `The bridge serves this API at POST ${adapter.prefix}${api.path} (provider ${adapter.id}): give the ` +
          `client the base URL <bridge URL>${adapter.prefix}, not ${given === '' ? 'the bridge URL alone' : `<bridge URL>${given}`} (docs/api.md).`,
      };
    }
  }
  return null;
}

const tails = new Map<string, RegExp>();

/**
 * An API's path as the end of a request's: literal, or with its parameters (Gemini's
 * `/v1beta/models/:model:generateContent`) matching one segment's text each.
 */
function tailOf(apiPath: string): RegExp {
  let re = tails.get(apiPath);
  if (!re) {
    const source = apiPath
      .toLowerCase()
      .split(/(?<=\/)(:[a-z]+)/i)
      // Odd places are the captured parameters; the rest is literal (`:generatecontent` too).
      .map((part, i) => (i % 2 === 1 ? '[^/:]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('');
    re = new RegExp(`${source}$`);
    tails.set(apiPath, re);
  }
  return re;
}
