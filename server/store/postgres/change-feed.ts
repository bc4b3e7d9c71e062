import pg from 'pg';
import type { StoreChange } from '../types';

/** The NOTIFY channel every replica listens on. */
const CHANNEL = 'aibridge_changes';
/** NOTIFY payloads must stay under 8000 bytes; larger changes travel by table, the notification by id. */
const INLINE_LIMIT = 7000;
/** Large payloads are kept this long for the other replicas to fetch. */
const PAYLOAD_TTL_SECONDS = 300;
const RECONNECT_MS = 1000;
/**
 * Live events are gathered this long and go out together: at a few hundred requests a second, one
 * NOTIFY carries many requests' events instead of a query (and a wake-up of every replica) each.
 */
const EVENT_BATCH_MS = 20;
/**
 * A replica says it is there this often; one unheard of for PEER_TTL_MS is taken to be gone.
 * Live events are only sent while another replica is there to hear them.
 */
const PRESENCE_MS = 10_000;
const PEER_TTL_MS = 35_000;

interface Envelope {
  /** The replica that sent it: a replica ignores its own notifications. */
  from: string;
  change?: StoreChange;
  /** Several live events in one notification (each as `change` would carry it). */
  changes?: StoreChange[];
  /** Row of `event_payloads` holding the change, when it was too large to send inline. */
  ref?: string;
  /** The sender is there (sent on listening, every PRESENCE_MS, and in answer to a new replica's). */
  hello?: true;
  /**
   * With `hello`: the change kinds added since hellos began that the sender reads (NEWER_KINDS). A
   * replica without them logs each as an unhandled change, so none is sent while one is there.
   */
  kinds?: string[];
  /** The sender is stopping. */
  bye?: true;
}

/**
 * Change kinds that replicas of earlier versions do not know. They are sent only while every
 * replica heard from has said in its hello that it reads them.
 */
const NEWER_KINDS = ['rate', 'response', 'gateway'] as const;

export interface ChangeFeedTiming {
  presenceMs: number;
  peerTtlMs: number;
  /**
   * A listening connection that has heard nothing, not even this replica's own hellos, for this
   * long is taken for dead and replaced (a half-open TCP connection after a failover raises no
   * error). Default: three presence intervals, at least 5 s.
   */
  deafMs: number;
}

/**
 * Replicas tell each other what changed through LISTEN/NOTIFY on one dedicated connection, which
 * reconnects on its own if the database goes away. Notifications are best effort by nature (a
 * replica that is reconnecting misses some): when the connection is lost, and again once it
 * listens anew, it tells its own listeners to `resync`, and what caches keys and users also forgets them after a short lifetime. Budgets are
 * read from the database on each use, never from what was notified.
 *
 * Replicas also say they are there (`hello`, `bye`), and the feed tells its listeners `peers`
 * when the first other replica appears and when the last one goes: a lone replica builds and sends
 * no live events (a JSON encoding and a share of a NOTIFY per event, about a tenth of a request's
 * CPU at saturation, docs/performance.md).
 */
export class ChangeFeed {
  private client: pg.Client | undefined;
  private readonly listeners = new Set<(change: StoreChange) => void>();
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  /** Whether a connection listened before: a later one may have missed notifications meanwhile. */
  private listened = false;
  /** Live events waiting to go out, as JSON, and their length. */
  private events: string[] = [];
  private eventBytes = 0;
  private eventTimer: NodeJS.Timeout | undefined;
  /** Other replicas heard from, and when (ms). */
  private readonly peers = new Map<string, number>();
  /** Whether each replica heard from reads NEWER_KINDS (its hello said so). */
  private readonly readsNewer = new Map<string, boolean>();
  private peersPresent = false;
  private presenceTimer: NodeJS.Timeout | undefined;
  private readonly timing: ChangeFeedTiming;
  /**
   * Since when a hello this replica sent (and the database took) has gone unheard on its listening
   * connection; undefined once one is heard. A hello that failed (the pool busy or away) says
   * nothing about the listening connection, so only taken ones count.
   */
  private unheardSince: number | undefined;
  /** When the listening connection last delivered one of this replica's own notifications. */
  private lastEchoAt = 0;

  constructor(
    private readonly url: string,
    private readonly pool: pg.Pool,
    private readonly replicaId: string,
    private readonly onError?: (err: Error, context: string) => void,
    timing: Partial<ChangeFeedTiming> = {},
  ) {
    this.ownPrefix = `{"from":${JSON.stringify(replicaId)},`;
    const presenceMs = timing.presenceMs ?? PRESENCE_MS;
    this.timing = {
      presenceMs,
      peerTtlMs: PEER_TTL_MS,
      deafMs: Math.max(3 * presenceMs, 5_000),
      ...timing,
    };
  }

  /** Whether another replica was heard from lately (then live events are worth sending). */
  get hasPeers(): boolean {
    return this.peersPresent;
  }

  /** How every envelope this replica sends begins. */
  private readonly ownPrefix: string;

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
    this.presenceTimer = setInterval(() => {
      // Not listening (the database is away): a hello would fail too, and the new connection
      // says hello as soon as it listens.
      const client = this.client;
      if (client && this.unheardSince !== undefined && Date.now() - this.unheardSince > this.timing.deafMs) {
        this.onError?.(
          new Error(
            `the listening connection heard nothing, not even this replica's own hellos, for ${this.timing.deafMs} ms; connecting again`,
          ),
          'change feed',
        );
        this.reconnectLater(client);
      } else if (client) this.sayHello();
      this.forgetSilentPeers();
    }, this.timing.presenceMs);
    this.presenceTimer.unref();
  }

  private async connect(): Promise<void> {
    // Keepalive: a connection whose peer vanished (a failover, a NAT that forgot it) is noticed.
    const client = new pg.Client({ connectionString: this.url, keepAlive: true });
    client.on('error', (err) => {
      this.onError?.(err, 'change feed');
      this.reconnectLater(client);
    });
    client.on('end', () => this.reconnectLater(client));
    client.on('notification', (msg) => {
      if (msg.channel === CHANNEL && msg.payload) void this.receive(msg.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      // The connect or LISTEN error is thrown; ending the half-open client may fail the same way.
      client.end().catch(() => undefined);
      throw err;
    }
    if (this.stopped) {
      // Stopped while connecting: the connection is unwanted, how it ends does not matter.
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.unheardSince = undefined;
    if (this.listened) this.deliver({ kind: 'resync', listening: true });
    this.listened = true;
    // Listening now: the other replicas learn of this one (and answer), so live events flow.
    this.sayHello();
  }

  private sayHello(): void {
    const listening = this.client;
    const sentAt = Date.now();
    this.pgNotify(`${this.ownPrefix}"hello":true,"kinds":${JSON.stringify(NEWER_KINDS)}}`).then(
      () => {
        // Its echo may have come before this answer: then it was heard.
        if (this.client === listening && this.lastEchoAt < sentAt) this.unheardSince ??= sentAt;
      },
      (err: unknown) => this.onError?.(err as Error, 'change feed presence'),
    );
  }

  /**
   * Another replica was heard from: a new one is answered, so it learns of this one at once. `kinds`:
   * what its hello said it reads; undefined when it was no hello (what it reads stays as known).
   */
  private heard(from: string, kinds?: unknown): void {
    const known = this.peers.has(from);
    this.peers.set(from, Date.now());
    if (kinds !== undefined || !known)
      this.readsNewer.set(
        from,
        Array.isArray(kinds) && NEWER_KINDS.every((k) => (kinds as unknown[]).includes(k)),
      );
    if (known) return;
    this.sayHello();
    this.presenceChanged();
  }

  private forgetSilentPeers(): void {
    const before = Date.now() - this.timing.peerTtlMs;
    for (const [id, at] of this.peers)
      if (at < before) {
        this.peers.delete(id);
        this.readsNewer.delete(id);
      }
    this.presenceChanged();
  }

  private presenceChanged(): void {
    const present = this.peers.size > 0;
    if (present === this.peersPresent) return;
    this.peersPresent = present;
    this.deliver({ kind: 'peers', present });
  }

  /** The listening connection failed or ended: drop it and try again until a new one listens. */
  private reconnectLater(dead: pg.Client): void {
    if (this.stopped || this.client !== dead) return;
    this.client = undefined;
    // Its failure was reported by whoever called this; ending a dead connection may fail again.
    dead.end().catch(() => undefined);
    // Changes made from now on go unheard until a connection listens again (which resyncs too):
    // caches stop trusting what they hold, and a database outage reaches requests at once.
    this.deliver({ kind: 'resync', listening: false });
    this.scheduleConnect();
  }

  private scheduleConnect(): void {
    if (this.stopped || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.connect().catch((err: unknown) => {
        this.onError?.(err as Error, 'change feed reconnect');
        this.scheduleConnect();
      });
    }, RECONNECT_MS);
    this.retry.unref();
  }

  async stop(): Promise<void> {
    await this.flushEvents();
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.presenceTimer) clearInterval(this.presenceTimer);
    this.presenceTimer = undefined;
    // The others stop sending live events for this one now rather than after PEER_TTL_MS.
    if (this.client) await this.pgNotify(`${this.ownPrefix}"bye":true}`).catch(() => undefined);
    const c = this.client;
    this.client = undefined;
    // Stopping: an error ending the connection changes nothing (the pool's own errors are reported).
    await c?.end().catch(() => undefined);
  }

  /** A listener that subscribes while other replicas are known hears `peers` (present) at once. */
  subscribe(listener: (change: StoreChange) => void): () => void {
    this.listeners.add(listener);
    if (this.peersPresent) this.tell(listener, { kind: 'peers', present: true });
    return () => this.listeners.delete(listener);
  }

  /**
   * Sends a change to the other replicas; never throws (a failure is reported to onError). Live
   * events wait up to EVENT_BATCH_MS to share a notification; key, user and document changes,
   * which caches depend on, go at once and alone (as every earlier version sends and reads them),
   * and so do rate counts and gateway calls, which their senders already gather every 250 ms.
   */
  notify(change: StoreChange): void {
    // Presence is this replica's own news; events and the newer kinds with nobody to hear them are
    // not worth a NOTIFY.
    if (change.kind === 'peers') return;
    const newer = (NEWER_KINDS as readonly string[]).includes(change.kind);
    if ((change.kind === 'event' || newer) && !this.peersPresent) return;
    // Kinds an earlier version would log as unhandled wait until every replica there reads them.
    if (newer && !this.everyPeerReadsNewer()) return;
    // A response's owner is one per Responses request, like its events: it shares their notification.
    if (change.kind !== 'event' && change.kind !== 'response') {
      this.send(JSON.stringify(change)).catch((err: unknown) =>
        this.onError?.(err as Error, 'change notify'),
      );
      return;
    }
    const json = JSON.stringify(change);
    const bytes = Buffer.byteLength(json) + 1;
    if (this.eventBytes + bytes > INLINE_LIMIT - 200) void this.flushEvents();
    this.events.push(json);
    this.eventBytes += bytes;
    this.eventTimer ??= setTimeout(() => void this.flushEvents(), EVENT_BATCH_MS);
    this.eventTimer.unref();
  }

  private async flushEvents(): Promise<void> {
    if (this.eventTimer) clearTimeout(this.eventTimer);
    this.eventTimer = undefined;
    const events = this.events;
    this.events = [];
    this.eventBytes = 0;
    if (events.length === 0) return;
    try {
      // One event alone keeps the single-change shape, so replicas of an earlier version read it.
      if (events.length === 1) await this.send(events[0]!);
      else await this.pgNotify(`${this.ownPrefix}"changes":[${events.join(',')}]}`);
    } catch (err) {
      this.onError?.(err as Error, 'change notify');
    }
  }

  /**
   * The arguments of a `pg_notify(channel, payload)` that a write runs in its own statement, for
   * a change caches depend on (a key, a user, a document kind): the others hear of it exactly when
   * the write commits. Sent apart after the commit, it could be lost (a pool busy for seconds, a
   * dropped connection) with the write standing, and the other replicas kept the old key or policy
   * with nothing to correct them. Such changes are small: always inline.
   */
  notifyArgs(change: StoreChange & { kind: 'key' | 'user' | 'doc' }): [channel: string, payload: string] {
    return [CHANNEL, `${this.ownPrefix}"change":${JSON.stringify(change)}}`];
  }

  /** `change`: one StoreChange as JSON. */
  private async send(change: string): Promise<void> {
    const inline = `${this.ownPrefix}"change":${change}}`;
    if (Buffer.byteLength(inline) <= INLINE_LIMIT) {
      await this.pgNotify(inline);
      return;
    }
    const r = await this.pool.query<{ id: string }>(
      `WITH gone AS (DELETE FROM event_payloads WHERE at < now() - make_interval(secs => $2))
       INSERT INTO event_payloads (payload) VALUES ($1) RETURNING id`,
      [change, PAYLOAD_TTL_SECONDS],
    );
    const ref = r.rows[0]!.id;
    await this.pgNotify(JSON.stringify({ from: this.replicaId, ref } satisfies Envelope));
  }

  /** Named: parsed once per connection, not once per notification. */
  private async pgNotify(payload: string): Promise<void> {
    await this.pool.query({
      name: 'aibridge_notify',
      text: 'SELECT pg_notify($1, $2)',
      values: [CHANNEL, payload],
    });
  }

  private everyPeerReadsNewer(): boolean {
    for (const reads of this.readsNewer.values()) if (!reads) return false;
    return true;
  }

  /** Tells this replica's own listeners (changes its caches must follow as the others' do). */
  deliver(change: StoreChange): void {
    for (const l of this.listeners) this.tell(l, change);
  }

  private tell(listener: (change: StoreChange) => void, change: StoreChange): void {
    try {
      listener(change);
    } catch (err) {
      this.onError?.(err as Error, 'change listener');
    }
  }

  private async receive(payload: string): Promise<void> {
    // A replica hears its own notifications too (two or three a request's worth of events): every
    // envelope this one sends starts with its id, so they are dropped before any parsing.
    if (payload.startsWith(this.ownPrefix)) {
      // Its own news, heard back: the listening connection works.
      this.unheardSince = undefined;
      this.lastEchoAt = Date.now();
      return;
    }
    let env: Envelope;
    try {
      env = JSON.parse(payload) as Envelope;
    } catch (err) {
      this.onError?.(err as Error, 'change payload is not JSON');
      return;
    }
    if (typeof env.from !== 'string' || env.from === this.replicaId) return;
    if (env.bye) {
      this.peers.delete(env.from);
      this.readsNewer.delete(env.from);
      this.presenceChanged();
      return;
    }
    // Any envelope counts as presence: replicas of an earlier version send no hello.
    this.heard(env.from, env.hello ? (env.kinds ?? null) : undefined);
    if (env.hello) return;
    if (Array.isArray(env.changes)) {
      for (const c of env.changes) this.deliver(c);
      return;
    }
    let change = env.change;
    if (!change && env.ref !== undefined) {
      try {
        const r = await this.pool.query<{ payload: string }>(
          'SELECT payload FROM event_payloads WHERE id = $1',
          [env.ref],
        );
        if (r.rows[0]) change = JSON.parse(r.rows[0].payload) as StoreChange;
      } catch (err) {
        this.onError?.(err as Error, 'change fetch');
      }
    }
    if (change) this.deliver(change);
  }
}
