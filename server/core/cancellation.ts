import { EventEmitter } from 'node:events';

/**
 * What cancels one exchange's upstream requests: the client left or the bridge is stopping.
 *
 * undici takes an EventEmitter with `aborted` and an `abort` event as a request's signal. It is
 * used instead of an AbortController because every metered request needs one and most are never
 * cancelled: in Node 20 an AbortSignal and undici's listener on it (EventTarget) took about 2% of
 * the main thread's time in the bridge's CPU profile (docs/performance.md). A real AbortSignal is made only when
 * something asks for one (`signal`, for the MCP SDK).
 */
export class Cancellation extends EventEmitter {
  aborted = false;
  reason: Error | undefined;
  private controller: AbortController | undefined;

  abort(reason: Error = abortError()): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
    this.emit('abort');
  }

  /** An AbortSignal that follows this cancellation, for APIs that take nothing else. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }
}

function abortError(): Error {
  const err = new Error('This operation was aborted');
  err.name = 'AbortError';
  return err;
}
