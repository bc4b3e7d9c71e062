import WebSocket from 'ws';
import {
  type BridgeEvent,
  type CloseNotice,
  EVENTS_PATH,
  EVENTS_SUBPROTOCOL,
  parseCloseNotice,
  parseEvent,
} from '../../shared/protocol';
import { Emitter } from '../emitter';
import {
  type Backoff,
  type ConnectionInput,
  type ConnectionState,
  DEFAULT_BACKOFF,
  type Effect,
  step,
} from './machine';

export interface LiveSocketOptions {
  /** The bridge's base URL (http or https; the socket uses ws or wss). */
  url: string;
  key: string;
  /** Query for `GET /api/v1/events`, e.g. `user=me`. */
  query?: string;
  backoff?: Backoff;
  /** How long a socket may take to open. */
  handshakeTimeoutMs?: number;
  /** How long an open socket may wait for the server's hello (which starts the heartbeat watch). */
  helloTimeoutMs?: number;
  /** Extra silence allowed beyond two heartbeats before the peer counts as dead. */
  heartbeatSlackMs?: number;
  now?: () => number;
}

/** The events URL for a bridge base URL. */
export function eventsUrl(baseUrl: string, query?: string): string {
  return `${baseUrl.replace(/^http/, 'ws')}${EVENTS_PATH}${query ? `?${query}` : ''}`;
}

/**
 * Runs the connection state machine against a real WebSocket: opens sockets, schedules retries,
 * and watches for a silent peer (no ping or message for two heartbeats). It only turns messages
 * into events; what they mean is the model's business.
 */
export class LiveSocket {
  private stateNow: ConnectionState = { status: 'signedOut' };
  private ws: WebSocket | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private heartbeatMs = 30_000;
  private readonly events = new Emitter<BridgeEvent>();
  private readonly states = new Emitter<ConnectionState>();
  readonly onEvent = this.events.event;
  readonly onState = this.states.event;
  private readonly now: () => number;

  constructor(private readonly opts: LiveSocketOptions) {
    this.now = opts.now ?? Date.now;
  }

  get state(): ConnectionState {
    return this.stateNow;
  }

  start(): void {
    this.dispatch({ type: 'start' });
  }

  stop(): void {
    this.dispatch({ type: 'stop' });
  }

  /** Reconnect now if waiting to retry. */
  retryNow(): void {
    this.dispatch({ type: 'retryNow' });
  }

  dispose(): void {
    this.stop();
    this.events.dispose();
    this.states.dispose();
  }

  private dispatch(input: ConnectionInput): void {
    const { state, effects } = step(this.stateNow, input, this.opts.backoff ?? DEFAULT_BACKOFF, this.now());
    const changed = state !== this.stateNow;
    this.stateNow = state;
    for (const e of effects) this.run(e);
    if (changed) this.states.fire(state);
  }

  private run(e: Effect): void {
    switch (e.type) {
      case 'open':
        this.open();
        return;
      case 'close':
        this.closeSocket();
        return;
      case 'schedule':
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.dispatch({ type: 'retry' }), e.delayMs);
        return;
      case 'cancelTimer':
        clearTimeout(this.retryTimer);
        this.retryTimer = undefined;
        return;
      case 'signInAgain':
        // The state carries it (needsSignIn); the container asks the user.
        return;
    }
  }

  private open(): void {
    this.closeSocket();
    const ws = new WebSocket(eventsUrl(this.opts.url, this.opts.query), [EVENTS_SUBPROTOCOL], {
      headers: { authorization: `Bearer ${this.opts.key}` },
      handshakeTimeout: this.opts.handshakeTimeoutMs ?? 10_000,
      perMessageDeflate: false,
    });
    this.ws = ws;
    const current = (): boolean => this.ws === ws;
    let notice: CloseNotice | undefined;
    ws.on('message', (data) => {
      if (!current()) return;
      this.feedWatchdog();
      const text = data.toString();
      notice = parseCloseNotice(text) ?? notice;
      const event = parseEvent(text);
      if (!event) return;
      if (event.type === 'hello') {
        this.heartbeatMs = event.heartbeatMs > 0 ? event.heartbeatMs : this.heartbeatMs;
        this.feedWatchdog();
        this.dispatch({ type: 'hello', at: this.now() });
      }
      this.events.fire(event);
    });
    ws.on('ping', () => {
      if (current()) this.feedWatchdog();
    });
    // Until the hello, no heartbeat is known: a socket that opened and then hears nothing (the
    // network lost right after the upgrade, a bridge stuck authenticating) would wait forever.
    ws.on('open', () => {
      if (current()) this.feedWatchdog(this.opts.helloTimeoutMs ?? 10_000);
    });
    ws.on('error', () => undefined); // 'close' follows with the code
    ws.on('close', (code, reason) => {
      if (!current()) return;
      this.ws = undefined;
      clearTimeout(this.watchdog);
      const input: ConnectionInput = { type: 'closed', code, reason: reason.toString(), at: this.now() };
      if (notice?.closeCode === code && notice.retryAfter !== undefined)
        input.retryAfterMs = notice.retryAfter * 1000;
      this.dispatch(input);
    });
  }

  /** A peer that sends nothing, not even a ping, for two heartbeats is gone: drop it and reconnect. */
  private feedWatchdog(silenceMs = this.heartbeatMs * 2 + (this.opts.heartbeatSlackMs ?? 5000)): void {
    clearTimeout(this.watchdog);
    const ws = this.ws;
    this.watchdog = setTimeout(() => ws?.terminate(), silenceMs);
  }

  private closeSocket(): void {
    clearTimeout(this.watchdog);
    const ws = this.ws;
    this.ws = undefined;
    if (!ws) return;
    if (ws.readyState === WebSocket.OPEN) {
      ws.close(1000);
      setTimeout(() => ws.terminate(), 1000).unref();
    } else if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  }
}
