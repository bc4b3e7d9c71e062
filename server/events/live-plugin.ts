import type { Capability, Core } from '../capability';
import { InterceptionEvents } from './interception-events';
import { LiveEvents, type LiveEventsDeps, type LiveEventsOptions, liveEventsRoutes } from './ws-routes';

export interface LiveCapability extends Capability {
  /** What the exchange engine and the recorder publish through. */
  interceptionEvents: InterceptionEvents;
  /** Closes a user's sockets whose key or session no longer works, now (SCIM deactivation). */
  recheckUser(userId: string): Promise<void>;
}

/** Live events (docs/api.md "Live events"): the bus over WebSocket at GET /api/v1/events, closed with 1001 on shutdown. */
export function liveCapability(
  core: Core,
  d: Pick<LiveEventsDeps, 'auth' | 'identity' | 'browser' | 'clientAddress'>,
  options?: Partial<LiveEventsOptions>,
): LiveCapability {
  const { bus, store, log, clock } = core;
  const live = new LiveEvents({ ...d, bus, store, log }, options);
  return {
    interceptionEvents: new InterceptionEvents(bus, () => clock.now()),
    routes: liveEventsRoutes(live),
    recheckUser: (userId) => live.recheckUser(userId),
  };
}
