import type { BridgeEvent } from '../../shared/protocol';
import type { Audience } from '../core/audience';
import type { Log } from '../core/log';

export type EventListener = (event: BridgeEvent, audience: Audience) => void;

/**
 * In-process publish/subscribe between the parts that see things happen (proxy, spend, alerts)
 * and the parts that tell people (WebSocket, webhooks). Publishing never waits on a listener: a
 * slow consumer buffers or drops on its own side.
 */
export class EventBus {
  private readonly listeners = new Set<EventListener>();

  /** `log` hears a listener's failure, which the publisher (often the proxy) must not see. */
  constructor(private readonly log: Log) {}

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  publish(event: BridgeEvent, audience: Audience): void {
    for (const l of this.listeners) {
      try {
        l(event, audience);
      } catch (err) {
        this.log.error({ err, eventType: event.type }, 'event bus: a listener failed');
      }
    }
  }

  get size(): number {
    return this.listeners.size;
  }
}
