/** What the provider needs of the sign-in: the bridge and the key, or nothing when signed out. */
export interface GatewaySession {
  url: string;
  key: string;
}

/** The fields of VS Code's `McpHttpServerDefinition` this provider sets (VS Code ≥ 1.101). */
export interface HttpServerDefinition {
  label: string;
  uri: unknown;
  headers: Record<string, string>;
  version?: string;
}

type Subscribe = (listener: () => void) => { dispose(): void };

/** VS Code's `McpServerDefinitionProvider`, as far as this provider fills it in. */
export interface GatewayProvider<D extends HttpServerDefinition> {
  onDidChangeMcpServerDefinitions: Subscribe;
  provideMcpServerDefinitions(): D[];
  resolveMcpServerDefinition(server: D): D | undefined;
}

/** The server's name in VS Code's MCP list. */
export const GATEWAY_LABEL = 'AI Bridge';

/**
 * The bridge's MCP gateway as VS Code's one MCP server definition: listed while signed in, gone when
 * signed out. The definition VS Code lists (and caches) carries no key; the `Authorization` header is
 * added in `resolveMcpServerDefinition`, when VS Code is about to connect, from the session of that
 * moment, so a renewed key is used and nothing of it is stored. `make` builds the definition (VS
 * Code's `McpHttpServerDefinition`); `version` changes with the bridge URL so VS Code drops the tools
 * it cached for another bridge.
 */
export function gatewayProvider<D extends HttpServerDefinition>(
  session: () => GatewaySession | undefined,
  onDidChange: Subscribe,
  make: (label: string, url: string, version: string) => D,
): GatewayProvider<D> {
  const definition = (s: GatewaySession): D => make(GATEWAY_LABEL, `${s.url}/mcp`, s.url);
  return {
    onDidChangeMcpServerDefinitions: onDidChange,
    provideMcpServerDefinitions() {
      const s = session();
      return s ? [definition(s)] : [];
    },
    resolveMcpServerDefinition(server) {
      const s = session();
      // Signed out, or signed in to another bridge, since the list was made: this key is not sent
      // to that URL, and VS Code asks again after onDidChange.
      if (!s || String(server.uri) !== String(definition(s).uri)) return undefined;
      server.headers = { ...server.headers, Authorization: `Bearer ${s.key}` };
      return server;
    },
  };
}

/**
 * Whether the bridge offers the MCP gateway: its RFC 9728 metadata
 * (`/.well-known/oauth-protected-resource`, unauthenticated) answers 200. A bridge from before the
 * gateway answers 404, and one that cannot be reached now is taken as without it: registering
 * `<bridge>/mcp` with the agents would then only show them a server that fails to connect.
 */
export async function bridgeHasGateway(url: string, timeoutMs = 5000): Promise<boolean> {
  try {
    const res = await fetch(`${url}/.well-known/oauth-protected-resource`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}
