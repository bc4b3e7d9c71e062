import type { FastifyReply, FastifyRequest } from 'fastify';
import { type Authenticator, credentialFrom } from '../identity/auth';

/**
 * The provider routes' `onRequest` hook: the key is checked from the headers alone, before
 * fastify reads the body, so a bad or missing key costs the bridge no buffered body (a 32 MiB
 * body per unauthenticated request would otherwise sit in memory until the 401). The principal
 * is left on the request for the handler. Agents' unauthenticated `HEAD <base URL>` probe is let
 * through to the handler, which answers it.
 */
export function authenticateFirst(auth: Authenticator, prefix: string) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (req.method === 'HEAD' && isBase(req.url, prefix) && !credentialFrom(req.headers)) return;
    try {
      req.principal = await auth.authenticate(req.headers, req.ip);
    } catch (err) {
      // The body still on its way is not wanted: closing beats reading it only to drop it.
      if (!req.raw.complete) reply.header('connection', 'close');
      throw err;
    }
  };
}

function isBase(url: string, prefix: string): boolean {
  const path = url.slice(prefix.length).split('?')[0];
  return path === '' || path === '/';
}
