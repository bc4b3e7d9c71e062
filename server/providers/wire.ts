/** The primitives every wire format is read with: JSON objects, SSE events, and what to do with an event. */
export type JsonObject = Record<string, unknown>;

export interface SseEvent {
  event: string | undefined;
  data: string;
  id: string | undefined;
}

/** What to do with one event of a stream the bridge rewrites. */
export type EventVerdict = { action: 'forward' } | { action: 'drop' } | { action: 'replace'; data: string };

export const FORWARD: EventVerdict = Object.freeze({ action: 'forward' });
export const DROP: EventVerdict = Object.freeze({ action: 'drop' });
