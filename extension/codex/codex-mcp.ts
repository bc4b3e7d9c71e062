import {
  type CodexUndoResult,
  headerLines,
  parseToml,
  stableJson,
  type Toml,
  table,
  tomlString,
  trimEnd,
} from './codex-config';

/** The MCP server name in `config.toml` (`[mcp_servers.aibridge]`). */
export const CODEX_MCP_NAME = 'aibridge';
/**
 * Where Codex reads the bearer token for the gateway (`bearer_token_env_var`, codex ≥ 0.169 for
 * Streamable HTTP servers): the terminal env puts the bridge key there for the provider already, so
 * the key is never written to disk.
 */
export const CODEX_MCP_TOKEN_VAR = 'OPENAI_API_KEY';
/** With `aibridge.byok` OPENAI_API_KEY is the user's own key: the bridge key is in AIBRIDGE_KEY. */
export const CODEX_MCP_BYOK_TOKEN_VAR = 'AIBRIDGE_KEY';
const MARKER = '# Added by the AI Bridge extension (its MCP gateway); removed at sign-out.';
const FILE = 'the Codex config.toml';

export type CodexMcpResult = CodexUndoResult;

/** The `[mcp_servers.aibridge]` table, as `codex mcp add aibridge --url … --bearer-token-env-var …` writes it. */
export function expectedGatewayServer(url: string, byok = false): Record<string, string> {
  return { url: `${url}/mcp`, bearer_token_env_var: byok ? CODEX_MCP_BYOK_TOKEN_VAR : CODEX_MCP_TOKEN_VAR };
}

/** A table this module wrote (for any bridge URL, either variable); a user's own `aibridge` server is not. */
function isOurs(v: unknown): boolean {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return false;
  const t = v as Toml;
  return (
    Object.keys(t).length === 2 &&
    typeof t.url === 'string' &&
    t.url.endsWith('/mcp') &&
    (t.bearer_token_env_var === CODEX_MCP_TOKEN_VAR || t.bearer_token_env_var === CODEX_MCP_BYOK_TOKEN_VAR)
  );
}

function current(v: Toml): unknown {
  return table(v, 'mcp_servers')?.[CODEX_MCP_NAME];
}

/** The value without `mcp_servers.aibridge`, so the rest can be compared before and after. */
function strip(v: Toml): Toml {
  const copy = structuredClone(v);
  const servers = table(copy, 'mcp_servers');
  if (servers) {
    delete servers[CODEX_MCP_NAME];
    if (Object.keys(servers).length === 0) delete copy.mcp_servers;
  }
  return copy;
}

/** The file's lines without our table (and the marker above it); `at` is where it was, or -1. */
function splitOurs(original: string): { eol: string; lines: string[]; at: number } {
  const eol = original.includes('\r\n') ? '\r\n' : '\n';
  const lines = original === '' ? [] : original.replace(/\r?\n$/, '').split(/\r?\n/);
  const headers = headerLines(lines);
  const kept: string[] = [];
  let dropping = false;
  let at = -1;
  lines.forEach((line, i) => {
    const h = headers.get(i);
    if (h !== undefined) {
      dropping = h[0] === 'mcp_servers' && h[1] === CODEX_MCP_NAME;
      if (dropping) {
        if (kept.at(-1) === MARKER) kept.pop();
        if (at === -1) at = kept.length;
      }
    }
    if (!dropping) kept.push(line);
  });
  return { eol, lines: kept, at };
}

const refusal = (what: string): { ok: false; message: string } => ({
  ok: false,
  message: `${what} the aibridge MCP server would have changed other settings in ${FILE}, or it defines them in a way this cannot edit safely; edit it by hand.`,
});

/**
 * Adds the bridge's MCP gateway to Codex (`[mcp_servers.aibridge]` with the URL and
 * `bearer_token_env_var`), or replaces in place the one written earlier. Every other line stays; the
 * result is parsed and compared with the original, and an edit that would change anything else is
 * refused. An `aibridge` server the user configured themselves is refused, never replaced.
 */
export function withGatewayServer(original: string, url: string, byok = false): CodexMcpResult {
  const parsed = parseToml(original);
  if (!parsed.ok) return { ok: false, message: `${FILE} is not valid TOML (${parsed.error}); fix it first.` };
  const before = parsed.value;
  const existing = current(before);
  if (existing !== undefined && !isOurs(existing)) {
    return {
      ok: false,
      message: `${FILE} already has its own [mcp_servers.${CODEX_MCP_NAME}]; left as it is (remove it with "codex mcp remove ${CODEX_MCP_NAME}" to let AI Bridge manage it).`,
    };
  }
  const server = expectedGatewayServer(url, byok);
  const block = [
    MARKER,
    `[mcp_servers.${CODEX_MCP_NAME}]`,
    ...Object.entries(server).map(([k, v]) => `${k} = ${tomlString(v)}`),
  ];
  const split = splitOurs(original);
  let lines: string[];
  if (split.at === -1) {
    const head = trimEnd(split.lines);
    lines = [...head, ...(head.length > 0 ? [''] : []), ...block];
  } else {
    const head = split.lines.slice(0, split.at);
    const tail = split.lines.slice(split.at);
    lines = [...head, ...block, ...(tail.length > 0 && tail[0]?.trim() !== '' ? [''] : []), ...tail];
  }
  const text = `${trimEnd(lines).join(split.eol)}${split.eol}`;
  if (text === original) return { ok: true, text, changed: false };
  const reparsed = parseToml(text);
  if (
    !reparsed.ok ||
    stableJson(current(reparsed.value)) !== stableJson(server) ||
    stableJson(strip(reparsed.value)) !== stableJson(strip(before))
  ) {
    return refusal('Writing');
  }
  return { ok: true, text, changed: true };
}

/** Sign-out: removes the table {@link withGatewayServer} wrote; a user's own `aibridge` server stays. */
export function withoutGatewayServer(original: string): CodexMcpResult {
  const parsed = parseToml(original);
  if (!parsed.ok) return { ok: false, message: `${FILE} is not valid TOML (${parsed.error}); fix it first.` };
  const before = parsed.value;
  if (!isOurs(current(before))) return { ok: true, text: original, changed: false };
  const split = splitOurs(original);
  const lines = split.lines;
  // The blank line that separated our table goes too, when it now doubles another or leads the file.
  const at = split.at;
  if (at !== -1 && lines[at - 1]?.trim() === '' && (at === 1 || (lines[at]?.trim() ?? '') === ''))
    lines.splice(at - 1, 1);
  const kept = trimEnd(lines);
  const text = kept.length === 0 ? '' : `${kept.join(split.eol)}${split.eol}`;
  const reparsed = parseToml(text);
  if (
    !reparsed.ok ||
    current(reparsed.value) !== undefined ||
    stableJson(strip(reparsed.value)) !== stableJson(strip(before))
  ) {
    return refusal('Removing');
  }
  return { ok: true, text, changed: text !== original };
}
