import type { Capability, Core } from '../capability';
import type { Authenticator } from '../identity/auth';
import type { IdentityService } from '../identity/identity-service';
import { InterceptionEvents } from './interception-events';
import { type BrowserSessions, LiveEvents, type LiveEventsOptions, liveEventsRoutes } from './ws-routes';

export interface LiveCapability extends Capability {
  /** What the exchange engine and the recorder publish through. */
  interceptionEvents: InterceptionEvents;
}

/** Live events (docs/api.md "Live events"): the bus over WebSocket at GET /api/v1/events, closed with 1001 on shutdown. */
export function liveCapability(
  core: Core,
  d: { auth: Authenticator; identity: IdentityService; browser: BrowserSessions },
  options?: Partial<LiveEventsOptions>,
): LiveCapability {
  const { bus, store, log, clock } = core;
  const live = new LiveEvents(
    { bus, auth: d.auth, identity: d.identity, store, log, browser: d.browser },
    options,
  );
  return {
    interceptionEvents: new InterceptionEvents(bus, () => clock.now()),
    routes: liveEventsRoutes(live),
  };
}
