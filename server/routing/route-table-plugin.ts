import type { FastifyPluginAsync } from 'fastify';
import type { Capability, Core } from '../capability';
import { ConfigError } from '../config';
import { BridgeError } from '../errors';
import { adaptersOf } from '../providers/registry';
import { formatRoutes, parseRoutes, Router, type RouteTable, RouteTableError } from './routes';

/** The table is one document, so a PUT replaces it whole and atomically on either store. */
const DOC_ID = 'routes';

/** The stored routing table, as the admin API wrote it. */
interface RouteTableDoc {
  routes: Record<string, string[]>;
  updatedAt: string;
}

/** What `GET` and `PUT /api/v1/routes` answer. */
interface RoutesView {
  routes: Record<string, string[]>;
  /** `file`: the providers file's table (nothing was PUT); `api`: the table last PUT. */
  source: 'file' | 'api';
  updatedAt: string | null;
}

export interface RouteTableCapability extends Capability {
  router: Router;
}

/**
 * Routes and failover (docs/routing.md): the routing table the proxy asks for each request's
 * targets. It starts from the providers file; a table PUT through the admin API replaces it, is
 * kept in the store, and is reloaded by other replicas through the change feed.
 */
export async function routeTableCapability(
  core: Core,
  aliasNamed: (name: string) => boolean = () => false,
): Promise<RouteTableCapability> {
  const { config, store, clock } = core;
  const instances = new Set(Object.keys(config.upstreams));
  let router: Router;
  try {
    router = new Router(config.routes, adaptersOf(config.upstreams));
  } catch (err) {
    if (err instanceof RouteTableError) throw new ConfigError('AIBRIDGE_PROVIDERS_FILE', err.message);
    throw err;
  }
  let view: RoutesView = { routes: formatRoutes(config.routes), source: 'file', updatedAt: null };

  /** The stored table, when there is one; an entry that no longer fits the instances keeps the last good table. */
  async function load(): Promise<void> {
    const doc = await store.getDoc<RouteTableDoc>('route_table', DOC_ID);
    if (!doc) return;
    try {
      router.replace(parseRoutes(doc.routes, instances));
      view = { routes: doc.routes, source: 'api', updatedAt: doc.updatedAt };
    } catch (err) {
      if (!(err instanceof RouteTableError)) throw err;
      core.log.error(
        { err },
        'the stored routing table does not fit the configured instances; kept the previous one',
      );
    }
  }
  await load();

  const routes: FastifyPluginAsync = async (app) => {
    const admin = { config: { access: 'admin' as const } };
    app.get('/api/v1/routes', admin, async () => view);
    app.put('/api/v1/routes', admin, async (req) => {
      const body = req.body;
      if (typeof body !== 'object' || body === null || Array.isArray(body))
        throw new BridgeError('invalid_routes', 'body: expected {"routes": {"<model>": ["<instance>", …]}}');
      for (const k of Object.keys(body))
        if (k !== 'routes') throw new BridgeError('invalid_routes', `${k}: unknown field`);
      let table: RouteTable;
      try {
        table = parseRoutes((body as { routes?: unknown }).routes ?? {}, instances);
        router.check(table);
        // A request for an alias's name reaches the alias's model, never the route.
        for (const name of Object.keys(table))
          if (aliasNamed(name))
            throw new RouteTableError(
              name,
              `"${name}" is an alias's name; a request for it would be sent to the alias's model, never through this route (name one or the other differently)`,
            );
      } catch (err) {
        if (err instanceof RouteTableError) throw new BridgeError('invalid_routes', err.message);
        throw err;
      }
      const doc: RouteTableDoc = {
        routes: formatRoutes(table),
        updatedAt: new Date(clock.now()).toISOString(),
      };
      await store.putDoc('route_table', DOC_ID, doc);
      router.replace(table);
      view = { routes: doc.routes, source: 'api', updatedAt: doc.updatedAt };
      return view;
    });
  };

  return { router, routes, reload: { route_table: load } };
}
