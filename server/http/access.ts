import type { Principal } from '../core/principal';

/** Who may call a route: anyone, any valid key, or an admin's key. */
export type Access = 'public' | 'member' | 'admin';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
    /** Set on metered requests, whose log line the recorder writes. */
    interceptionId: string | null;
  }
  interface FastifyContextConfig {
    access?: Access;
  }
}

/** The caller of a route whose access is `member` or `admin`: the hook has set it, or the route would not run. */
export function principalOf(req: { principal: Principal | null }): Principal {
  if (!req.principal) throw new Error('route reached without a principal: its access entry is missing');
  return req.principal;
}
