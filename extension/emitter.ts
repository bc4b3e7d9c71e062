/** The smallest event emitter: what `vscode.EventEmitter` does, without importing vscode. */
export class Emitter<T> {
  private readonly listeners = new Set<(value: T) => void>();

  /** `onListenerError`: told of a listener's failure (default: thrown again on its own, later). */
  constructor(private readonly onListenerError: (err: unknown) => void = rethrowLater) {}

  /** Subscribes; the returned object's `dispose()` unsubscribes (so it fits `context.subscriptions`). */
  readonly event = (listener: (value: T) => void): { dispose(): void } => {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  };

  /**
   * Calls every listener. As with `vscode.EventEmitter`, one that throws does not keep the event from
   * the others, nor throw into whoever fired: the live socket's message handler (a render failing on
   * something a newer bridge sent would otherwise cut the feed mid-message), or a sign-in.
   */
  fire(value: T): void {
    for (const l of [...this.listeners]) {
      try {
        l(value);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }

  dispose(): void {
    this.listeners.clear();
  }
}

/** Reported as an uncaught error of its own (the extension host logs it), outside the fire. */
function rethrowLater(err: unknown): void {
  setTimeout(() => {
    throw err;
  });
}
