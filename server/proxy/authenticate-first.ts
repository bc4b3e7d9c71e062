import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../core/principal';
import { type Authenticator, credentialFrom } from '../identity/auth';

/**
 * The provider routes' `onRequest` hook: the key is checked from the headers alone, before
 * fastify reads the body, so a bad or missing key costs the bridge no buffered body (a 32 MiB
 * body per unauthenticated request would otherwise sit in memory until the 401). The principal
 * is left on the request for the handler. Agents' unauthenticated `HEAD <base URL>` probe is let
 * through to the handler, which answers it.
 */
export function authenticateFirst(auth: Authenticator, prefix: string) {
  // Fastify's callback form, and the principal at once when the key is cached: no promise per request.
  return (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void => {
    if (req.method === 'HEAD' && isBase(req.url, prefix) && !credentialFrom(req.headers)) {
      done();
      return;
    }
    const refused = (err: unknown): void => {
      // The body still on its way is not wanted: closing beats reading it only to drop it.
      if (!req.raw.complete) reply.header('connection', 'close');
      done(err instanceof Error ? err : new Error(String(err)));
    };
    let principal: Principal | Promise<Principal>;
    try {
      principal = auth.authenticateNow(req.headers, req.ip);
    } catch (err) {
      refused(err);
      return;
    }
    if (principal instanceof Promise)
      principal.then((p) => {
        req.principal = p;
        done();
      }, refused);
    else {
      req.principal = principal;
      done();
    }
  };
}

function isBase(url: string, prefix: string): boolean {
  const path = url.slice(prefix.length).split('?')[0];
  return path === '' || path === '/';
}
