import {
  type ClaudeEditResult,
  isObject,
  type Json,
  parseClaudeConfig,
  renderClaudeConfig,
} from './claude-config';

/** The MCP server name in Claude Code (its tools show as `mcp__aibridge__<server>__<tool>`). */
export const CLAUDE_MCP_NAME = 'aibridge';

/**
 * The header value as written: Claude Code expands `${VAR}` in an MCP server's headers when it
 * connects (checked with claude 2.1.197), and the terminal env (aibridge.terminalEnv) puts the
 * bridge key in ANTHROPIC_AUTH_TOKEN, so the key itself never reaches the file.
 */
// biome-ignore lint/suspicious/noTemplateCurlyInString: claude expands this reference itself
export const CLAUDE_MCP_AUTHORIZATION = 'Bearer ${ANTHROPIC_AUTH_TOKEN}';

/**
 * With `aibridge.byok` the terminal has no ANTHROPIC_AUTH_TOKEN (the provider credential is the
 * user's own): the gateway gets the bridge key from AIBRIDGE_KEY, in the header the bridge reads it
 * from beside a credential of the user's.
 */
// biome-ignore lint/suspicious/noTemplateCurlyInString: claude expands this reference itself
export const CLAUDE_MCP_BRIDGE_KEY = '${AIBRIDGE_KEY}';

function gatewayHeaders(byok: boolean): Json {
  return byok ? { 'X-AIBridge-Key': CLAUDE_MCP_BRIDGE_KEY } : { Authorization: CLAUDE_MCP_AUTHORIZATION };
}

/**
 * The `mcpServers.aibridge` entry, exactly as `claude mcp add --transport http --scope user aibridge
 * <url>/mcp --header "Authorization: Bearer ${ANTHROPIC_AUTH_TOKEN}"` writes it (with `byok`, the
 * header `X-AIBridge-Key: ${AIBRIDGE_KEY}` instead).
 */
export function claudeGatewayEntry(url: string, byok = false): Json {
  return { type: 'http', url: `${url}/mcp`, headers: gatewayHeaders(byok) };
}

/**
 * Whether an entry is one this module wrote (for any bridge URL, either header): an HTTP server
 * authorised by the terminal's key and nothing else. A user's own `aibridge` entry (say with a
 * literal key) is not.
 */
export function isOurGatewayEntry(v: unknown): boolean {
  if (!isObject(v) || v.type !== 'http' || typeof v.url !== 'string' || !v.url.endsWith('/mcp')) return false;
  const headers = JSON.stringify(v.headers);
  return (
    (headers === JSON.stringify(gatewayHeaders(false)) || headers === JSON.stringify(gatewayHeaders(true))) &&
    Object.keys(v).every((k) => k === 'type' || k === 'url' || k === 'headers')
  );
}

type Parsed = { ok: true; config: Json; servers: Json | undefined } | { ok: false; message: string };

function parse(original: string): Parsed {
  const parsed = parseClaudeConfig(original);
  if (!parsed.ok) return parsed;
  const config = parsed.config;
  const servers = config.mcpServers;
  if (servers !== undefined && !isObject(servers)) {
    return {
      ok: false,
      message: 'the Claude Code config has an "mcpServers" that is not an object; left as it is.',
    };
  }
  return { ok: true, config, servers };
}

/**
 * Adds the bridge's MCP gateway to Claude Code's user MCP servers (`mcpServers.aibridge` in
 * `~/.claude.json`), or points an entry written earlier at this bridge. Every other key, server and
 * the key order stay. An `aibridge` entry the user made themselves is refused, never replaced.
 */
export function withClaudeGateway(original: string, url: string, byok = false): ClaudeEditResult {
  const p = parse(original);
  if (!p.ok) return p;
  const servers = p.servers ?? {};
  const current = servers[CLAUDE_MCP_NAME];
  const entry = claudeGatewayEntry(url, byok);
  if (current !== undefined && !isOurGatewayEntry(current)) {
    return {
      ok: false,
      message: `the Claude Code config already has its own "${CLAUDE_MCP_NAME}" MCP server; left as it is (remove it with "claude mcp remove ${CLAUDE_MCP_NAME} -s user" to let AI Bridge manage it).`,
    };
  }
  if (JSON.stringify(current) === JSON.stringify(entry)) return { ok: true, text: original, changed: false };
  servers[CLAUDE_MCP_NAME] = entry;
  p.config.mcpServers = servers;
  return { ok: true, text: renderClaudeConfig(p.config, original), changed: true };
}

/**
 * Sign-out: removes the entry {@link withClaudeGateway} wrote (and `mcpServers` when it is left
 * empty). A user's own `aibridge` entry stays.
 */
export function withoutClaudeGateway(original: string): ClaudeEditResult {
  if (original.trim() === '') return { ok: true, text: original, changed: false };
  const p = parse(original);
  if (!p.ok) return p;
  if (!p.servers || !isOurGatewayEntry(p.servers[CLAUDE_MCP_NAME]))
    return { ok: true, text: original, changed: false };
  delete p.servers[CLAUDE_MCP_NAME];
  if (Object.keys(p.servers).length === 0) delete p.config.mcpServers;
  return { ok: true, text: renderClaudeConfig(p.config, original), changed: true };
}
