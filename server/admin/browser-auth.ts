import type { IncomingHttpHeaders } from 'node:http';
import type { Principal } from '../core/principal';
import { BridgeError } from '../errors';
import type { BrowserSessions } from '../events/ws-routes';
import { type Authenticator, credentialFrom } from '../identity/auth';
import { readCookie, SESSION_COOKIE } from './cookies';
import type { Sessions } from './sessions';

/** The header the admin page sends on every request; other sites cannot add it without a CORS preflight the bridge never grants. */
export const CSRF_HEADER = 'x-aibridge-csrf';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Whether a browser request's `Origin` is the bridge itself: the host it was sent to, or
 * AIBRIDGE_PUBLIC_URL when a proxy in front rewrites the host. A missing Origin is not same-origin.
 */
export function sameOrigin(headers: IncomingHttpHeaders, publicUrl: string | undefined): boolean {
  const origin = headers.origin;
  if (typeof origin !== 'string' || origin === 'null') return false;
  let o: URL;
  try {
    o = new URL(origin);
  } catch {
    // An Origin that is not a URL is no origin of ours: refused, and nothing to log about a bad header.
    return false;
  }
  if (publicUrl !== undefined && o.origin === new URL(publicUrl).origin) return true;
  return (o.protocol === 'http:' || o.protocol === 'https:') && o.host === headers.host;
}

/**
 * A cookie-authenticated request that changes something must carry the CSRF header, and its Origin,
 * when the browser sends one, must be the bridge. SameSite=Strict already keeps the cookie off
 * cross-site requests; this also covers same-site neighbours (another port or subdomain).
 */
export function assertCsrf(headers: IncomingHttpHeaders, publicUrl: string | undefined): void {
  if (headers[CSRF_HEADER] !== '1')
    throw new BridgeError('csrf_refused', `A signed-in browser request must send ${CSRF_HEADER}: 1.`);
  if (headers.origin !== undefined && !sameOrigin(headers, publicUrl))
    throw new BridgeError('csrf_refused', 'This request comes from another origin.');
}

/** The session cookie's token, when the request has one. */
export function sessionTokenOf(headers: IncomingHttpHeaders): string | undefined {
  return readCookie(headers, SESSION_COOKIE);
}

/**
 * Who is calling an `/api` route: a bridge key when one is sent (scripts, the CLI, the extension;
 * unaffected by cookies), else the admin page's session cookie.
 */
export class RequestAuth {
  constructor(
    private readonly auth: Authenticator,
    private readonly sessions: Sessions,
    private readonly publicUrl: string | undefined,
  ) {}

  async authenticate(req: { headers: IncomingHttpHeaders; method: string; ip?: string }): Promise<Principal> {
    const token = credentialFrom(req.headers) === undefined ? sessionTokenOf(req.headers) : undefined;
    if (token === undefined) return this.auth.authenticate(req.headers, req.ip);
    if (!SAFE_METHODS.has(req.method)) assertCsrf(req.headers, this.publicUrl);
    return this.sessions.resolve(token);
  }
}

/** The live-events socket's view of cookie sign-ins (server/events/ws-routes.ts). */
export function browserSessions(sessions: Sessions, publicUrl: string | undefined): BrowserSessions {
  return {
    tokenOf: sessionTokenOf,
    sameOrigin: (headers) => sameOrigin(headers, publicUrl),
    resolve: (token) => sessions.resolve(token),
  };
}
