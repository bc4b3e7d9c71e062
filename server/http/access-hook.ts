import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../core/principal';
import { BridgeError } from '../errors';

/** Resolves a request's caller (a bridge key, or the admin page's session cookie) or throws `unauthorized`. */
export interface RequestAuthenticator {
  authenticate(req: FastifyRequest): Promise<Principal>;
}

/**
 * A credential that is not a bridge key (a provisioner's, server/identity/provisioners.ts): true
 * when it authenticated the request, false when the request carries none; throws to refuse.
 */
export type OtherCredential = (req: FastifyRequest) => Promise<boolean>;

/**
 * Enforces each route's `config.access`. A route without an entry is refused outright, so a route
 * added without deciding who may call it cannot leak.
 */
export function apiAccessHook(auth: RequestAuthenticator, other?: OtherCredential) {
  return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const access = req.routeOptions.config.access;
    if (access === 'public') return;
    if (access === undefined) {
      // Unknown routes reach the not-found handler, which has no access entry either.
      if (req.routeOptions.url === undefined) return;
      throw new BridgeError('forbidden', 'This route has no access rule.');
    }
    if (other && (await other(req))) return;
    const principal = await auth.authenticate(req);
    if (access === 'admin' && principal.user.role !== 'admin') {
      throw new BridgeError('forbidden', 'An admin key is required.');
    }
    req.principal = principal;
  };
}
