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
