/** The process-wide MCP settings (environment; docs/mcp.md). Servers themselves are configured as data. */
export interface McpSettings {
  /** The JSON file of MCP servers read at start: `AIBRIDGE_MCP_CONFIG`, default `<data dir>/mcp-servers.json`. */
  readonly configFile: string;
  /** AES-256-GCM key (base64 of 32 bytes) for MCP secrets and per-user credentials; undefined: none can be stored. */
  readonly credentialsKey: string | undefined;
  /** Upstream requests one client request may take, the last one told to answer without tools. */
  readonly maxRounds: number;
  /** One tool call's limit, unless the server's config sets its own. */
  readonly callTimeoutMs: number;
  /** One MCP gateway call's limit (`<bridge>/mcp`), unless the server's config sets its own. */
  readonly gatewayCallTimeoutMs: number;
  /** MCP gateway calls one user may have running at once on one replica; 0: no cap. */
  readonly gatewayCallsPerUser: number;
  /** Connecting to a server and listing its tools. */
  readonly connectTimeoutMs: number;
  /** How often tool lists are fetched again (besides `notifications/tools/list_changed`). */
  readonly refreshMs: number;
  /** Longest tool result, in characters, the model receives; longer ones are cut. */
  readonly resultLimit: number;
  /** Per-user connections unused this long are closed. */
  readonly idleMs: number;
  /** Whether admins may define stdio servers (commands run on the bridge's host) through the API. */
  readonly apiStdio: boolean;
  /** The bridge's address as users' browsers reach it, for the OAuth redirect; default: from the request. */
  readonly publicUrl: string | undefined;
  /**
   * Clients whose requests get no injected tools (default `vscode-chat`): they reach the same
   * servers through the MCP gateway themselves, and would otherwise see every tool twice.
   */
  readonly injectSkipClients: readonly string[];
}

/** Bytes of the credentials key. */
export const KEY_BYTES = 32;

/** Whether a base64 string decodes to exactly a 32-byte key. */
export function isValidKey(b64: string): boolean {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64.trim())) return false;
  return Buffer.from(b64.trim(), 'base64').length === KEY_BYTES;
}
