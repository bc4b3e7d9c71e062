import type { Dispatcher } from 'undici';
import { errors as undiciErrors, util as undiciUtil } from 'undici';
import type { Cancellation } from '../core/cancellation';

/**
 * An upstream request whose answer's body is read without a Node stream in between. undici's
 * `request()` wraps every answer in a Readable (its BodyReadable) behind an AsyncResource: on a
 * small JSON answer that machinery (buffer state, a tick each to start flowing, to emit, to end
 * and to close, and a destroy sequence) cost more than the rest of the upstream call
 * (docs/performance.md, "The answer without a stream"). The exchange needs little of it: the
 * chunks in order as they come, a pause while the client's socket is full, an end, an error, and
 * a way to stop. `LeanBody` gives that to the dispatcher's handler callbacks directly.
 *
 * It stands in for undici's body where the bridge reads an answer (`on`/`off` of `data`, `end`,
 * `error` and `close`, `pause`, `resume`, `destroy`, `for await`); what it does not have (`text()`,
 * `json()`, piping) the bridge does not call on an answer sent this way.
 */

/** What a body holds back before it asks the upstream connection to wait: a Readable's default. */
const HIGH_WATER = 64 * 1024;

type Listener = (arg?: unknown) => void;
type EventName = 'data' | 'end' | 'error' | 'close';

/** An answer's body as the bridge reads it (see the module comment). */
export class LeanBody {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private flowing = false;
  /** Paused by its reader (`pause()`), which no new `data` listener undoes. */
  private held = false;
  private ended = false;
  private endEmitted = false;
  destroyed = false;
  private closed = false;
  private failure: Error | undefined;
  private flushing = false;
  private readonly listeners: Record<EventName, Listener[]> = { data: [], end: [], error: [], close: [] };
  /** undici's: resumes a connection whose data handler answered false. */
  resumeUpstream: (() => void) | undefined;
  /** Aborts the request (before the body's end). */
  abortUpstream: ((err: Error) => void) | undefined;
  /** Waiting for the next chunk: an async iterator's pending `next()`. */
  private waiter:
    | { resolve: (r: IteratorResult<Buffer>) => void; reject: (err: unknown) => void }
    | undefined;
  private upstreamWaiting = false;
  /** Called once the body is done (ended, failed or destroyed): the abort listener goes. */
  onDone: (() => void) | undefined;

  /**
   * A `data` listener starts the flow, and unlike a Readable's it gets what is waiting (and the
   * end) at once, in this call: on a small answer, everything has come before anyone reads, and
   * a tick to hand it over was most of what reading it cost. So a reader adds `end`, `error` and
   * `close` first, as eachChunk does.
   */
  on(event: string, fn: Listener): this {
    const list = this.listeners[event as EventName];
    if (list === undefined) return this;
    list.push(fn);
    if (event === 'data' && !this.held) {
      this.flowing = true;
      if (!this.flushing) this.flush();
    }
    return this;
  }

  addListener(event: string, fn: Listener): this {
    return this.on(event, fn);
  }

  once(event: string, fn: Listener): this {
    const once = (arg?: unknown): void => {
      this.off(event, once);
      fn(arg);
    };
    return this.on(event, once);
  }

  off(event: string, fn: Listener): this {
    const list = this.listeners[event as EventName];
    if (list === undefined) return this;
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
    return this;
  }

  removeListener(event: string, fn: Listener): this {
    return this.off(event, fn);
  }

  pause(): this {
    this.held = true;
    this.flowing = false;
    return this;
  }

  resume(): this {
    this.held = false;
    this.flowing = true;
    this.scheduleFlush();
    return this;
  }

  isPaused(): boolean {
    return !this.flowing;
  }

  /** The whole answer has come (what is left is queued here): nothing more to wait for upstream. */
  get arrived(): boolean {
    return this.ended && !this.destroyed;
  }

  /**
   * Stops the body: the request is aborted if its answer has not ended, what is queued is dropped,
   * and `error` (when given) then `close` are emitted in a later tick, as a Readable's destroy does.
   */
  destroy(err?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.flowing = false;
    this.queue.length = 0;
    this.queued = 0;
    if (!this.ended) this.abortUpstream?.(err ?? new undiciErrors.RequestAbortedError());
    this.abortUpstream = undefined;
    this.resumeUpstream = undefined;
    this.done();
    process.nextTick(() => {
      if (err !== undefined) this.fail(err);
      this.emitClose();
    });
    return this;
  }

  /** From the dispatcher: a chunk of the answer. False: hold the connection until resumed. */
  push(chunk: Buffer): boolean {
    if (this.destroyed) return true;
    if (this.waiter !== undefined) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: chunk, done: false });
      return true;
    }
    if (this.flowing && this.queue.length === 0 && !this.flushing) {
      this.emit('data', chunk);
      if (this.flowing || this.destroyed) return true;
      this.upstreamWaiting = true;
      return false;
    }
    this.queue.push(chunk);
    this.queued += chunk.length;
    if (this.flowing) this.scheduleFlush();
    if (this.queued < HIGH_WATER) return true;
    this.upstreamWaiting = true;
    return false;
  }

  /** From the dispatcher: the answer ended. */
  end(): void {
    if (this.destroyed) return;
    this.ended = true;
    this.abortUpstream = undefined;
    this.resumeUpstream = undefined;
    this.done();
    if (this.waiter !== undefined && this.queue.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      this.endEmitted = true;
      w.resolve({ value: undefined, done: true });
      this.closeSoon();
      return;
    }
    if (this.flowing && this.queue.length === 0 && !this.flushing) this.finishEnd();
    else if (this.flowing) this.scheduleFlush();
  }

  /** From the dispatcher: the answer broke off. What was queued is dropped, as a Readable's destroy drops it. */
  error(err: Error): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.flowing = false;
    this.queue.length = 0;
    this.queued = 0;
    this.abortUpstream = undefined;
    this.resumeUpstream = undefined;
    this.done();
    // A tick later, as undici's own body is destroyed: a handler that is running finishes first.
    process.nextTick(() => {
      this.fail(err);
      this.emitClose();
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    // The iterator reads by pulling: no `data` listener, and what comes meanwhile waits in the queue.
    this.held = true;
    this.flowing = false;
    const next = (): Promise<IteratorResult<Buffer>> => {
      if (this.failure !== undefined) return Promise.reject(this.failure);
      const chunk = this.queue.shift();
      if (chunk !== undefined) {
        this.queued -= chunk.length;
        this.wakeUpstream();
        return Promise.resolve({ value: chunk, done: false });
      }
      if (this.ended) {
        if (!this.endEmitted) {
          this.endEmitted = true;
          this.closeSoon();
        }
        return Promise.resolve({ value: undefined, done: true });
      }
      if (this.destroyed) return Promise.reject(prematureClose());
      this.wakeUpstream();
      return new Promise((resolve, reject) => {
        this.waiter = { resolve, reject };
      });
    };
    return {
      next,
      return: (): Promise<IteratorResult<Buffer>> => {
        if (!this.ended) this.destroy();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
    // A Readable with no error listener throws it; a body nobody listens to is only dropped.
    this.emit('error', err);
  }

  private emitClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.waiter === undefined && this.listeners.close.length === 0) return;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(prematureClose());
    this.emit('close');
  }

  private finishEnd(): void {
    if (this.endEmitted) return;
    this.endEmitted = true;
    this.emit('end');
    this.closeSoon();
  }

  /** `close` a tick after the end; none when nobody listens (eachChunk has let go by now). */
  private closeSoon(): void {
    if (this.listeners.close.length === 0) this.closed = true;
    else process.nextTick(() => this.emitClose());
  }

  private done(): void {
    const d = this.onDone;
    this.onDone = undefined;
    d?.();
  }

  private wakeUpstream(): void {
    if (!this.upstreamWaiting || this.queued >= HIGH_WATER) return;
    this.upstreamWaiting = false;
    this.resumeUpstream?.();
  }

  private scheduleFlush(): void {
    if (this.flushing) return;
    if (this.queue.length === 0 && !(this.ended && !this.endEmitted)) {
      this.wakeUpstream();
      return;
    }
    this.flushing = true;
    // Later, not at once: resume() is called by a reader that may still be busy with a chunk.
    process.nextTick(() => this.flush());
  }

  private flush(): void {
    this.flushing = false;
    while (this.flowing && !this.destroyed) {
      const chunk = this.queue.shift();
      if (chunk === undefined) break;
      this.queued -= chunk.length;
      this.emit('data', chunk);
    }
    if (!this.flowing || this.destroyed) return;
    if (this.ended) this.finishEnd();
    else this.wakeUpstream();
  }

  private emit(event: EventName, arg?: unknown): void {
    const list = this.listeners[event];
    if (list.length === 0) return;
    if (list.length === 1) {
      list[0]!(arg);
      return;
    }
    for (const fn of [...list]) fn(arg);
  }
}

/** The error a Readable's reader gets when it closes before its end (Node's ERR_STREAM_PREMATURE_CLOSE). */
export function prematureClose(): Error {
  return Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}

export interface LeanRequest {
  origin: string;
  path: string;
  method: Dispatcher.HttpMethod;
  headers: Readonly<Record<string, string | string[]>>;
  body: Buffer | null;
  signal?: AbortSignal | Cancellation | undefined;
}

/**
 * Sends a request through `dispatcher` and resolves with its status, headers and a LeanBody once
 * the headers came; rejects as undici's `request()` does when it fails before them (a refused
 * connection, a headers timeout, the signal).
 */
export function leanRequest(dispatcher: Dispatcher, req: LeanRequest): Promise<Dispatcher.ResponseData> {
  return new Promise((resolve, reject) => {
    const signal = req.signal;
    let body: LeanBody | undefined;
    let abort: ((err: Error) => void) | undefined;
    let settled = false;
    let reason: Error | undefined;
    const onAbort = (): void => {
      reason = abortReason(signal);
      if (body !== undefined) body.destroy(reason);
      else abort?.(reason);
    };
    const unlisten = (): void => {
      if (signal === undefined) return;
      if ('addEventListener' in signal) signal.removeEventListener('abort', onAbort);
      else signal.off('abort', onAbort);
    };
    if (signal !== undefined) {
      if (signal.aborted) {
        reject(abortReason(signal));
        return;
      }
      if ('addEventListener' in signal) signal.addEventListener('abort', onAbort, { once: true });
      else signal.once('abort', onAbort);
    }
    const handler: Dispatcher.DispatchHandler = {
      onConnect(a: (err?: Error) => void): void {
        if (reason !== undefined) {
          a(reason);
          return;
        }
        abort = a;
      },
      onHeaders(statusCode: number, raw: Buffer[], resume: () => void, statusText: string): boolean {
        if (statusCode < 200) return true;
        body = new LeanBody();
        body.resumeUpstream = resume;
        body.abortUpstream = abort;
        body.onDone = unlisten;
        settled = true;
        resolve({
          statusCode,
          statusText,
          headers: undiciUtil.parseHeaders(raw) as Dispatcher.ResponseData['headers'],
          trailers: {},
          opaque: null,
          context: {},
          body: body as unknown as Dispatcher.ResponseData['body'],
        });
        return true;
      },
      onData(chunk: Buffer): boolean {
        return body === undefined ? true : body.push(chunk);
      },
      onComplete(): void {
        body?.end();
      },
      onError(err: Error): void {
        if (!settled) {
          settled = true;
          unlisten();
          reject(err);
          return;
        }
        body?.error(err);
      },
    };
    dispatcher.dispatch(
      { origin: req.origin, path: req.path, method: req.method, headers: req.headers, body: req.body },
      handler,
    );
  });
}

function abortReason(signal: AbortSignal | Cancellation | undefined): Error {
  const r = signal?.reason;
  return r instanceof Error ? r : new undiciErrors.RequestAbortedError();
}
