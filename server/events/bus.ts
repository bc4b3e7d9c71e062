import type { BridgeEvent } from '../../shared/protocol';
import type { Audience } from '../core/audience';

export type EventListener = (event: BridgeEvent, audience: Audience) => void;

/**
 * In-process publish/subscribe between the parts that see things happen (proxy, spend, alerts)
 * and the parts that tell people (WebSocket, webhooks). Publishing never waits on a listener: a
 * slow consumer buffers or drops on its own side.
 */
export class EventBus {
  private readonly listeners = new Set<EventListener>();

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  publish(event: BridgeEvent, audience: Audience): void {
    for (const l of this.listeners) {
      try {
        l(event, audience);
      } catch {
        // A listener's failure is its own; the publisher (often the proxy) must not see it.
      }
    }
  }

  get size(): number {
    return this.listeners.size;
  }
}
