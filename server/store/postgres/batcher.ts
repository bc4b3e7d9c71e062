/** Thrown at once when the queue is full: the database is slower than the traffic. */
export class QueueFullError extends Error {
  readonly code = 'store_queue_full';
  constructor(limit: number) {
    super(`the audit write queue is full (${limit} records wait for the database)`);
    this.name = 'QueueFullError';
  }
}

interface Pending<T, R> {
  item: T;
  resolve(r: R): void;
  reject(err: unknown): void;
}

/**
 * Collects items handed over one at a time and writes them in batches, one batch at a time, in
 * the order they came. While a batch is being written the next one gathers, so a busy bridge makes
 * few large transactions and an idle one writes each record at once. The queue is bounded: past
 * `limit` waiting items `push` rejects immediately (backpressure the caller sees), never a silent drop.
 */
export class Batcher<T, R> {
  private queue: Pending<T, R>[] = [];
  private writing: Promise<void> | undefined;
  /** When the last batch started (performance.now()); -Infinity: none yet. */
  private lastBatchAt = Number.NEGATIVE_INFINITY;

  /**
   * `intervalMs`: a batch starts at most once per this many ms (group commit, as the embedded
   * journal's AIBRIDGE_AUDIT_SYNC_MS). An item after a quiet spell is written at once; under load
   * each batch carries more, and each batch costs the bridge a statement's write and its answer's
   * read whatever its size. 0: a batch starts as soon as the last one is written.
   */
  constructor(
    private readonly write: (items: T[]) => Promise<R[]>,
    private readonly opts: { maxBatch: number; limit: number; intervalMs?: number },
  ) {}

  get waiting(): number {
    return this.queue.length;
  }

  push(item: T): Promise<R> {
    if (this.queue.length >= this.opts.limit) {
      // A full queue is a full batch: it goes now, not after the interval.
      this.due?.();
      return Promise.reject(new QueueFullError(this.opts.limit));
    }
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.writing ??= this.loop();
      if (this.due && (this.full() || performance.now() >= this.lastBatchAt + (this.opts.intervalMs ?? 0)))
        this.due();
    });
  }

  /** What waits fills a batch (or the queue, when its limit is the smaller). */
  private full(): boolean {
    return this.queue.length >= Math.min(this.opts.maxBatch, this.opts.limit);
  }

  /** Ends the wait for a batch's interval (loop) once it has passed or a batch is full: set while the loop waits. */
  private due: (() => void) | undefined;
  /** Flushes under way: batches then go without waiting for their interval. */
  private flushes = 0;

  /**
   * Until the interval since the last batch began has passed and an item comes, which starts the
   * batch (at the end of its turn of the event loop, awake for it anyway); or, if none comes, a
   * timer a further interval on. On the VMs measured, waking an idle event loop for a timer at the
   * interval's end cost about as much CPU as the batch's write (the embedded journal's kick).
   */
  private untilDue(wait: number, interval: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let done = false;
      const go = (): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (this.due === wake) this.due = undefined;
        resolve();
      };
      const wake = (): void => {
        this.due = undefined;
        setImmediate(go);
      };
      const timer = setTimeout(go, wait + interval);
      this.due = wake;
    });
  }

  private async loop(): Promise<void> {
    // Let the current tick's hand-overs join the first batch.
    await new Promise<void>((r) => setImmediate(r));
    const interval = this.opts.intervalMs ?? 0;
    while (this.queue.length > 0) {
      // Only a batch that would not be full waits: one of `maxBatch` goes at once, so the interval
      // never caps the rate at maxBatch per interval (a backlog drains as fast as it is written).
      if (interval > 0 && this.flushes === 0 && !this.full()) {
        const wait = this.lastBatchAt + interval - performance.now();
        if (wait > 0) await this.untilDue(wait, interval);
      }
      this.lastBatchAt = performance.now();
      const batch = this.queue.splice(0, this.opts.maxBatch);
      try {
        const results = await this.write(batch.map((p) => p.item));
        for (const [i, p] of batch.entries()) p.resolve(results[i]!);
      } catch (err) {
        // Nothing of a failed batch was written (one transaction): each caller may retry its item.
        for (const p of batch) p.reject(err);
      }
    }
    this.writing = undefined;
  }

  /** Resolves once everything handed over so far has been written or refused. */
  async flush(): Promise<void> {
    this.flushes++;
    this.due?.();
    try {
      while (this.writing) await this.writing;
    } finally {
      this.flushes--;
    }
  }
}
