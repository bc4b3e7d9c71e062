import type { FastifyReply, FastifyRequest } from 'fastify';
import { BridgeError } from '../errors';
import type { Authenticator } from '../identity/auth';

/**
 * Enforces each route's `config.access`. A route without an entry is refused outright, so a route
 * added without deciding who may call it cannot leak.
 */
export function apiAccessHook(auth: Authenticator) {
  return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const access = req.routeOptions.config.access;
    if (access === 'public') return;
    if (access === undefined) {
      // Unknown routes reach the not-found handler, which has no access entry either.
      if (req.routeOptions.url === undefined) return;
      throw new BridgeError('forbidden', 'This route has no access rule.');
    }
    const principal = await auth.authenticate(req.headers, req.ip);
    if (access === 'admin' && principal.user.role !== 'admin') {
      throw new BridgeError('forbidden', 'An admin key is required.');
    }
    req.principal = principal;
  };
}
