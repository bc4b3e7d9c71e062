import { randomBytes } from 'node:crypto';

const PREFIX = 'gw1.';
const MAX_FIELD = 200;

/** What a gateway session carries from its `initialize` to every later request, on any replica. */
export interface GatewaySession {
  id: string;
  userId: string;
  /** `clientInfo.name` (and version) of the client's `initialize`. */
  client: string;
}

/**
 * The gateway keeps no session state on a replica (server/gateway/gateway-routes.ts): what a session
 * must remember, the client that opened it, travels in its `Mcp-Session-Id`. It is not signed: it
 * names the user it belongs to, which every request's own key must match, and the client name is
 * the client's own word anyway (`clientInfo`), so a forged id gains nothing.
 */
export function newSessionId(userId: string, client: string): GatewaySession {
  const body = JSON.stringify({
    u: userId,
    c: client.slice(0, MAX_FIELD),
    n: randomBytes(12).toString('base64url'),
  });
  return {
    id: `${PREFIX}${Buffer.from(body).toString('base64url')}`,
    userId,
    client: client.slice(0, MAX_FIELD),
  };
}

/** The session an id names, or undefined for an id this gateway never issued. */
export function readSessionId(id: string): GatewaySession | undefined {
  if (!id.startsWith(PREFIX) || id.length > 1024) return undefined;
  try {
    const v = JSON.parse(Buffer.from(id.slice(PREFIX.length), 'base64url').toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null) return undefined;
    const { u, c } = v as { u?: unknown; c?: unknown };
    if (typeof u !== 'string' || typeof c !== 'string') return undefined;
    return { id, userId: u, client: c };
  } catch {
    return undefined;
  }
}
