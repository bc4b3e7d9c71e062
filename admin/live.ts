import {
  type BridgeEvent,
  CLOSE_CODES,
  closeReasonOf,
  EVENTS_PATH,
  EVENTS_SUBPROTOCOL,
  parseEvent,
} from '../shared/protocol';

export type LiveState = 'connecting' | 'open' | 'retrying' | 'stopped';

export interface LiveOptions {
  onEvent(e: BridgeEvent): void;
  onState(s: LiveState): void;
  /** The server refused the session (4001): the page shows the sign-in again. */
  onUnauthorized(): void;
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 15_000;

/**
 * The live events socket, authenticated by the session cookie (same origin: the browser sends it
 * on the upgrade). An explicit state machine: connecting → open → retrying (backoff with jitter) →
 * connecting ..., or stopped on sign-out or a final close code.
 */
export class LiveConnection {
  private ws: WebSocket | undefined;
  private state: LiveState = 'stopped';
  private retryMs = FIRST_RETRY_MS;
  private timer: number | undefined;

  constructor(private readonly opts: LiveOptions) {}

  start(): void {
    if (this.state !== 'stopped') return;
    this.connect();
  }

  stop(): void {
    this.set('stopped');
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const ws = this.ws;
    this.ws = undefined;
    ws?.close(1000);
  }

  private set(s: LiveState): void {
    this.state = s;
    this.opts.onState(s);
  }

  private connect(): void {
    this.set('connecting');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}${EVENTS_PATH}`, [EVENTS_SUBPROTOCOL]);
    this.ws = ws;
    ws.onmessage = (m) => {
      if (this.ws !== ws || typeof m.data !== 'string') return;
      const e = parseEvent(m.data);
      if (!e) return;
      if (e.type === 'hello') {
        this.retryMs = FIRST_RETRY_MS;
        this.set('open');
      }
      this.opts.onEvent(e);
    };
    ws.onclose = (c) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      const reason = closeReasonOf(c.code);
      if (reason === 'unauthorized') {
        this.set('stopped');
        this.opts.onUnauthorized();
        return;
      }
      if (reason !== undefined && CLOSE_CODES[reason].final) {
        this.set('stopped');
        return;
      }
      this.set('retrying');
      const wait = this.retryMs * (0.5 + Math.random() / 2);
      this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
      this.timer = window.setTimeout(() => {
        this.timer = undefined;
        if (this.state === 'retrying') this.connect();
      }, wait);
    };
  }
}
