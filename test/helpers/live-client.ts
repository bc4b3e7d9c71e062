import WebSocket from 'ws';
import { type BridgeEvent, EVENTS_PATH, parseEvent } from '../../shared/protocol';

export interface LiveTestClient {
  ws: WebSocket;
  events: BridgeEvent[];
  /** Resolves with the close code and reason. */
  closed: Promise<{ code: number; reason: string }>;
  /** Waits for an event matching `pred` (already received or still to come). */
  next<T extends BridgeEvent['type']>(
    type: T,
    pred?: (e: Extract<BridgeEvent, { type: T }>) => boolean,
    timeoutMs?: number,
  ): Promise<Extract<BridgeEvent, { type: T }>>;
  close(): Promise<void>;
}

/** A WebSocket client for `GET /api/v1/events` that keeps every event it receives. */
export function liveClient(
  baseUrl: string,
  opts: { key?: string; query?: string; protocols?: string[]; headers?: Record<string, string> } = {},
): LiveTestClient {
  const url = `${baseUrl.replace(/^http/, 'ws')}${EVENTS_PATH}${opts.query ? `?${opts.query}` : ''}`;
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  const ws = new WebSocket(url, opts.protocols ?? [], { headers });
  const events: BridgeEvent[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (data) => {
    const e = parseEvent(data.toString());
    if (e) events.push(e);
    for (const w of waiters) w();
  });
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  return {
    ws,
    events,
    closed,
    next(type, pred, timeoutMs = 5000) {
      type E = Extract<BridgeEvent, { type: typeof type }>;
      const find = (): E | undefined =>
        events.find((e): e is E => e.type === type && (!pred || pred(e as never))) as E | undefined;
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const e = find();
          if (!e) return;
          cleanup();
          resolve(e as never);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no ${type} event within ${timeoutMs}ms; got ${events.map((e) => e.type)}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async close() {
      if (ws.readyState === WebSocket.CLOSED) return;
      ws.close();
      await closed;
    },
  };
}
