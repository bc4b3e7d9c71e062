import type { FastifyPluginAsync } from 'fastify';
import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import { AuthThrottle } from '../identity/auth-throttle';
import type { IdentityService } from '../identity/identity-service';
import type { KeyHasher } from '../identity/keys';
import type { MemberWrites } from '../identity/member-writes';
import { looksLikeAccessToken, McpGrants } from './grants';
import { oauthApiRoutes, oauthPublicRoutes } from './oauth-routes';

export interface OAuthCapability extends Capability {
  grants: McpGrants;
  /** Metadata, registration, authorize, token and the consent page: outside `/api`. */
  page: FastifyPluginAsync;
  /** What the MCP gateway accepts besides bridge keys. */
  accessTokens: { looksLike(token: string): boolean; authenticate: McpGrants['authenticate'] };
}

/**
 * Client registrations one address may make per minute. Registration needs no credential, and the
 * unused clients a bridge keeps are bounded (server/oauth/grants.ts): without a per-address pace,
 * one host could fill that bound and hold everyone else's registrations off for a day.
 */
const REGISTRATIONS_PER_MINUTE = 30;

/**
 * The bridge as the OAuth 2.1 authorization server of its MCP gateway (docs/mcp.md#oauth-for-mcp-clients): MCP
 * clients that authorize themselves (no bridge key configured) get an access token usable only at
 * `/mcp`, after the user signs in the way the bridge already offers and approves the client.
 */
export function oauthCapability(
  core: Core,
  d: { identity: IdentityService; hasher: KeyHasher; writes?: Pick<MemberWrites, 'take'> },
): OAuthCapability {
  const publicUrl = core.config.mcp.publicUrl;
  const grants = new McpGrants(
    core.store,
    d.hasher,
    d.identity,
    datesOf(core.clock),
    d.writes,
    core.config.deviceKeyMaxDays,
  );
  return {
    grants,
    routes: oauthApiRoutes(grants, publicUrl),
    page: oauthPublicRoutes(
      grants,
      publicUrl,
      new AuthThrottle(REGISTRATIONS_PER_MINUTE, () => core.clock.now()),
    ),
    accessTokens: {
      looksLike: looksLikeAccessToken,
      authenticate: (token, resource) => grants.authenticate(token, resource),
    },
  };
}
