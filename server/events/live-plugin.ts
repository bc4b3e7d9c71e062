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
  const { bus, store, log, clock, life } = core;
  const live = new LiveEvents({ ...d, bus, store, log }, options);
  // A key revoked, a user changed or a session ended, here or on another replica: their sockets are
  // checked now, not at the next heartbeat (30 s). After the other watchers (the auth cache) have seen the change.
  const unwatch = store.watch((change) => {
    if (change.kind === 'key') setImmediate(() => void live.recheckKey(change.id));
    else if (change.kind === 'user') setImmediate(() => void live.recheckUser(change.id));
    else if (change.kind === 'doc' && change.docKind === 'admin_session')
      setImmediate(() => void live.recheckSessions());
  });
  life.onClose('live events: key and user changes', unwatch);
  return {
    interceptionEvents: new InterceptionEvents(bus, () => clock.now()),
    routes: liveEventsRoutes(live),
    recheckUser: (userId) => live.recheckUser(userId),
  };
}
