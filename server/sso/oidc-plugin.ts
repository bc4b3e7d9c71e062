import type { Sessions } from '../admin/sessions';
import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import type { IdentityService } from '../identity/identity-service';
import { OidcRelyingParty } from './oidc-client';
import { OidcFlows } from './oidc-flows';
import { oidcRoutes } from './oidc-routes';

/**
 * Single sign-on with the organisation's OpenID Provider (docs/sso.md): the relying party, the
 * flows under way (in the store, for every replica), and the routes the admin page signs in
 * through. Off, the routes still answer, with `oidc_not_configured`, and the page shows the key form.
 */
export function oidcCapability(
  core: Core,
  deps: {
    identity: IdentityService;
    sessions: Sessions;
    /** True while SCIM sets team and role (server/scim): a sign-in then leaves them alone. */
    groupsFromScim: () => Promise<boolean>;
  },
): Capability {
  const { config, store, clock, log } = core;
  const settings = config.oidc;
  return {
    routes: oidcRoutes({
      settings,
      // Nothing is fetched here: discovery waits for the first sign-in, so a provider down at start stops nothing.
      rp: settings ? new OidcRelyingParty(settings, clock, log) : undefined,
      flows: new OidcFlows(store, datesOf(clock)),
      sessions: deps.sessions,
      identity: deps.identity,
      store,
      groups: config.groups,
      groupsFromScim: deps.groupsFromScim,
      keySignIn: config.adminKeySignIn,
      publicUrl: config.mcp.publicUrl,
      now: datesOf(clock),
      log,
    }),
  };
}
