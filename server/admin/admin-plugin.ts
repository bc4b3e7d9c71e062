import type { FastifyPluginAsync } from 'fastify';
import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import type { BrowserSessions } from '../events/ws-routes';
import type { Authenticator } from '../identity/auth';
import type { IdentityService } from '../identity/identity-service';
import type { MemberWrites } from '../identity/member-writes';
import { adminRoutes } from './admin-routes';
import { adminAssetRoutes, findAdminAssets } from './assets';
import { browserSessions, RequestAuth } from './browser-auth';
import { Sessions } from './sessions';

export interface AdminCapability extends Capability {
  /** The page's assets, served outside `/api` with their CSP. */
  assets: FastifyPluginAsync;
  /** Who calls an `/api` route: a bridge key, or the page's session cookie (CSRF-checked). */
  requestAuth: RequestAuth;
  /** Cookie sessions for the live-events socket, from the bridge's own origin only. */
  browser: BrowserSessions;
  /** The page's sign-ins, for other ways in (SSO) to open one. */
  sessions: Sessions;
}

/** The admin page (docs/admin.md): a key exchanged for a session cookie, accepted on /api routes. */
export function adminCapability(
  core: Core,
  auth: Authenticator,
  identity: IdentityService,
  writes?: MemberWrites,
): AdminCapability {
  const { config, store, clock } = core;
  const sessions = new Sessions(
    store,
    auth,
    datesOf(clock),
    config.adminSessionHours * 3_600_000,
    config.limits.adminSessionsPerKey,
    writes,
  );
  const publicUrl = config.mcp.publicUrl;
  return {
    assets: adminAssetRoutes(findAdminAssets()),
    requestAuth: new RequestAuth(auth, sessions, publicUrl),
    browser: browserSessions(sessions, publicUrl),
    sessions,
    routes: adminRoutes({ sessions, identity, store, publicUrl, keySignIn: config.adminKeySignIn }),
  };
}
