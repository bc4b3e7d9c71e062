import pg from 'pg';

/** One round trip to the database: a statement outside a transaction, or one inside it (BEGIN and COMMIT count). */
export interface RoundTrip {
  text: string;
  /** Sent as a named (prepared) statement: its name and its text exactly as sent. */
  prepared?: { name: string; text: string };
  /** Every statement of the transaction this one belongs to (itself alone outside one). */
  txn: string[];
}

type QueryFn = (this: pg.Client, ...args: unknown[]) => unknown;

/**
 * Counts every statement the `pg` driver sends to one database, from every client of this process
 * (bridges in the test run in-process): each `Client.query` is one round trip. Statements are
 * grouped into their transactions, so a test can say what a transaction was for by what it did.
 */
export class PgQueryLog {
  readonly trips: RoundTrip[] = [];
  private readonly open = new WeakMap<pg.Client, string[]>();
  private original: QueryFn | undefined;

  constructor(private readonly database: string) {}

  start(): this {
    const proto = pg.Client.prototype as unknown as { query: QueryFn };
    const original = proto.query;
    this.original = original;
    const log = this;
    proto.query = function (this: pg.Client, ...args: unknown[]): unknown {
      if (this.database === log.database) log.note(this, args[0]);
      return original.apply(this, args);
    };
    return this;
  }

  stop(): void {
    if (this.original) (pg.Client.prototype as unknown as { query: QueryFn }).query = this.original;
    this.original = undefined;
  }

  clear(): void {
    this.trips.length = 0;
  }

  private note(client: pg.Client, q: unknown): void {
    const text =
      typeof q === 'string' ? q : typeof q === 'object' && q !== null && 'text' in q ? String(q.text) : '';
    const name = typeof q === 'object' && q !== null && 'name' in q ? String(q.name) : undefined;
    const sql = text.replace(/\s+/g, ' ').trim();
    let txn = this.open.get(client);
    if (/^BEGIN/i.test(sql)) {
      txn = [];
      this.open.set(client, txn);
    }
    txn?.push(sql);
    this.trips.push({ text: sql, txn: txn ?? [sql], ...(name ? { prepared: { name, text } } : {}) });
    if (/^(COMMIT|ROLLBACK)/i.test(sql)) this.open.delete(client);
  }

  /** Round trips whose transaction (or statement) matches `re`. */
  count(re: RegExp): number {
    return this.trips.filter((t) => t.txn.some((s) => re.test(s))).length;
  }
}
