import { CLOSE_CODES, closeReasonOf } from '../../shared/protocol';

/** The longest wait a close notice's `retryAfter` is taken at (an hour). */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/** What the status bar says about the connection. */
export type ConnectionStatus = 'signedOut' | 'connecting' | 'live' | 'reconnecting' | 'error';

export type ConnectionState =
  | { status: 'signedOut' }
  /** The first socket since start is opening. */
  | { status: 'connecting' }
  /**
   * `failures`: the attempts in a row that failed before this socket went live (absent: none). A
   * socket dropped before it has lived `Backoff.maxMs` goes on counting from there, so a bridge (or
   * a proxy) that says hello and drops at once is not reconnected to every second.
   */
  | { status: 'live'; since: number; failures?: number }
  /** Lost or never reached: waiting until `retryAt` (null while a socket is opening). `attempt` counts failures in a row. */
  | { status: 'reconnecting'; attempt: number; retryAt: number | null; lastError: string }
  /** Stopped retrying: a reconnect would be refused the same way. `needsSignIn` for a rejected key. */
  | { status: 'error'; message: string; needsSignIn: boolean };

export type ConnectionInput =
  | { type: 'start' }
  | { type: 'stop' }
  /** The socket opened and the server said hello. */
  | { type: 'hello'; at: number }
  /**
   * The socket is gone, or never opened (1006 for network failures). `retryAfterMs`: the wait the
   * server's close notice asked for (`retryAfter`, shared/protocol.ts), when it sent one.
   */
  | { type: 'closed'; code: number; reason: string; at: number; retryAfterMs?: number }
  /** The backoff timer fired. */
  | { type: 'retry' }
  /** Try now instead of waiting (a refresh, the network coming back). */
  | { type: 'retryNow' };

export type Effect =
  | { type: 'open' }
  | { type: 'close' }
  | { type: 'schedule'; delayMs: number }
  | { type: 'cancelTimer' }
  /** The key was refused: ask the user to sign in again. */
  | { type: 'signInAgain'; message: string };

export interface Backoff {
  baseMs: number;
  maxMs: number;
  /** A number in [0, 1): tests pass a fixed one. */
  random: () => number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 1000, maxMs: 30_000, random: Math.random };

/**
 * Exponential backoff with "equal jitter": half the capped exponential delay is fixed, the other
 * half random, so many clients that lost the same bridge do not come back in step.
 */
export function backoffDelay(attempt: number, b: Backoff): number {
  const cap = Math.min(b.maxMs, b.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(cap / 2 + b.random() * (cap / 2));
}

function describeClose(code: number, reason: string): string {
  if (code === 1006) return 'connection lost';
  const name = closeReasonOf(code);
  return `${reason || name || 'closed'} (${code})`;
}

/**
 * The live connection's state machine, pure: given a state and an input, the next state and what
 * the socket owner must do. Every state handles every input (unlisted pairs change nothing).
 */
export function step(
  state: ConnectionState,
  input: ConnectionInput,
  backoff: Backoff = DEFAULT_BACKOFF,
  now = Date.now(),
): { state: ConnectionState; effects: Effect[] } {
  const same = { state, effects: [] as Effect[] };
  switch (input.type) {
    case 'start':
      if (state.status === 'signedOut' || state.status === 'error') {
        return { state: { status: 'connecting' }, effects: [{ type: 'open' }] };
      }
      return same;
    case 'stop':
      if (state.status === 'signedOut') return same;
      return { state: { status: 'signedOut' }, effects: [{ type: 'cancelTimer' }, { type: 'close' }] };
    case 'hello':
      if (state.status === 'connecting') return { state: { status: 'live', since: input.at }, effects: [] };
      if (state.status === 'reconnecting') {
        return { state: { status: 'live', since: input.at, failures: state.attempt }, effects: [] };
      }
      return same;
    case 'closed': {
      if (state.status === 'signedOut' || state.status === 'error') return same;
      const reason = closeReasonOf(input.code);
      if (reason && CLOSE_CODES[reason].final) {
        const needsSignIn = reason === 'unauthorized';
        const message = input.reason || describeClose(input.code, input.reason);
        return {
          state: { status: 'error', message, needsSignIn },
          effects: needsSignIn ? [{ type: 'signInAgain', message }] : [],
        };
      }
      const attempt =
        state.status === 'reconnecting'
          ? state.attempt + 1
          : state.status === 'live' && input.at - state.since < backoff.maxMs
            ? (state.failures ?? 0) + 1
            : 1;
      let delayMs = backoffDelay(attempt, backoff);
      // The wait a close notice asks for, up to an hour: a larger one (a proxy's or a broken
      // bridge's) overflowed the timer, which Node then fires at once, reconnecting in a loop.
      if (reason === 'rateLimited')
        delayMs = Math.max(delayMs, Math.min(input.retryAfterMs ?? backoff.maxMs, MAX_RETRY_AFTER_MS));
      return {
        state: {
          status: 'reconnecting',
          attempt,
          retryAt: now + delayMs,
          lastError: describeClose(input.code, input.reason),
        },
        effects: [{ type: 'schedule', delayMs }],
      };
    }
    case 'retry':
    case 'retryNow':
      if (state.status === 'reconnecting' && state.retryAt !== null) {
        return {
          state: { ...state, retryAt: null },
          effects:
            input.type === 'retryNow' ? [{ type: 'cancelTimer' }, { type: 'open' }] : [{ type: 'open' }],
        };
      }
      return same;
  }
}
