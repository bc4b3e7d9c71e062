import type { FastifyInstance } from 'fastify';
import type { Access } from './access';

export interface RouteEntry {
  method: string;
  url: string;
  /** Who may call it; provider routes are `member` (any valid key). Undefined: refused outright. */
  access: Access | undefined;
  /** A WebSocket route (upgraded GET). */
  websocket: boolean;
}

/**
 * Every route the bridge serves, as registered, with its access rule: the one table an access
 * test walks, so a route added without a rule is caught.
 */
export class RouteTable {
  readonly routes: RouteEntry[] = [];

  attach(app: FastifyInstance): void {
    app.addHook('onRoute', (r) => {
      const methods = Array.isArray(r.method) ? r.method : [r.method];
      const config = r.config as { access?: Access } | undefined;
      const websocket = (r as { websocket?: boolean }).websocket === true;
      for (const method of methods)
        this.routes.push({ method, url: r.url, access: config?.access, websocket });
    });
  }
}
