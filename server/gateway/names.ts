import type { McpServerConfig } from '../mcp/servers';

/** The one tool a per-user server offers to a user who has not connected it yet. */
export const CONNECT_TOOL = 'connect';
const RESOURCE_SCHEME = 'aibridge:';

/**
 * `<server>__<tool>`: server names are lower-case letters, digits and `-` (server/mcp/servers.ts),
 * so the first `__` always ends the server's name, whatever the tool is called.
 */
export function gatewayName(server: string, name: string): string {
  return `${server}__${name}`;
}

export function splitName(name: string): { server: string; tool: string } | undefined {
  const at = name.indexOf('__');
  if (at <= 0 || at + 2 >= name.length) return undefined;
  return { server: name.slice(0, at), tool: name.slice(at + 2) };
}

/** A server's resource URI as the gateway offers it: `aibridge://<server>/<the URI, encoded>`. */
export function resourceUri(server: string, uri: string): string {
  return `${RESOURCE_SCHEME}//${server}/${encodeURIComponent(uri)}`;
}

export function splitResourceUri(uri: string): { server: string; uri: string } | undefined {
  const m = /^aibridge:\/\/([a-z0-9-]+)\/(.+)$/.exec(uri);
  if (!m) return undefined;
  try {
    return { server: m[1]!, uri: decodeURIComponent(m[2]!) };
  } catch {
    return undefined;
  }
}

/**
 * What a call to a server the user has not connected answers: the link that authorises it (OAuth
 * servers: the authorisation server's page, started for this user), or where to store a token.
 */
export function connectAdvice(s: McpServerConfig, origin: string, authorizationUrl: string | null): string {
  const how = authorizationUrl
    ? `Open this link in your browser and authorise AI Bridge there (it connects with your own account): ${authorizationUrl}`
    : s.auth.oauth
      ? `Authorise it with your bridge key: POST ${origin}/api/v1/me/mcp/${s.name}/oauth answers the link to open in your browser.`
      : `Store your own token for it with your bridge key: PUT ${origin}/api/v1/me/mcp/${s.name}/credentials with the body {"token": "<your token>"}.`;
  return `You have not connected ${s.name} to AI Bridge yet, so its tools cannot run as you. ${how} Then list the tools again.`;
}
