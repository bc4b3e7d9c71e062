import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { User } from '../../../shared/identity';
import type { GatewayToolCall, Interception, Page } from '../../../shared/interception';
import type { Alert } from '../../../shared/spend';
import { anchorJson, type ChainHead, EMPTY_HEAD, GENESIS, linkRecord } from '../../core/chain';
import type { KeyRecord } from '../../core/principal';
import { type BucketQuery, hourOf, type UsageBucket } from '../../core/rollup';
import { BridgeError } from '../../errors';
import { decodeCursor, encodeCursor } from '../cursor';
import { toolResultKey } from '../tool-result-key';
import type {
  AccessLogEntry,
  AlertQuery,
  BudgetCharge,
  BudgetClaim,
  BudgetLedger,
  BudgetSettlement,
  ColumnAtOdds,
  DocKind,
  GatewayCallQuery,
  InterceptionFilter,
  LeaseOutcome,
  LeaseSizing,
  NewInterception,
  ReserveOutcome,
  Store,
  StoreChange,
  StoreHealth,
  StoreSetting,
  UserPatch,
} from '../types';
import { ITEM_RECORDS_LIMIT } from '../types';

import { Batcher } from './batcher';
import * as ledgers from './budget-ledgers';
import { ChangeFeed } from './change-feed';
import { appliedMigrations, LATEST_MIGRATION, migrate } from './migrations';
import { asStoreError, isPoolExhausted, isUnreachable } from './pg-errors';
import { BUCKET_SUMS, batchStatement } from './record-batch';
import { interceptionWhere, pgText, Where } from './sql-filter';
import { REPAIR_CHUNK, repairStatement, STALE_ROWS } from './stale-rows';

/** Buckets per statement when a copy imports pruned rollups. */
const IMPORT_BUCKETS_CHUNK = 5000;

export interface PostgresStoreOptions {
  url: string;
  /** Pool size per replica. */
  maxConnections?: number;
  /** Records waiting to be written beyond which appends are refused at once (backpressure). */
  queueLimit?: number;
  /** Records per insert transaction at most. */
  maxBatch?: number;
  /** Group commit of interception records: a batch starts at most once per this many ms (AIBRIDGE_AUDIT_SYNC_MS). */
  auditSyncMs?: number;
  /** Apply pending migrations at open (default); `aibridge migrate` runs them alone. */
  migrate?: boolean;
  /** How long one read that walks records may run in the database (default 30 s). */
  readTimeoutMs?: number;
  /** How often a replica writing records looks for rows an older bridge wrote (default a minute). */
  repairEveryMs?: number;
  onError?: (err: Error, context: string) => void;
}

/** SQLSTATE of a unique-constraint violation. */
const UNIQUE_VIOLATION = '23505';

/** Records read per round trip while scanning. */
const SCAN_CHUNK = 500;
/** Rows deleted per statement while pruning, so retention never holds long locks. */
const PRUNE_CHUNK = 5000;

type Row = Record<string, unknown>;

/** Connections of the read pool (PostgresStore.readPool), beside the main pool's. */
const READ_CONNECTIONS = 3;
/** Connections of the pool for reads across every user (PostgresStore.orgReadPool). */
const ORG_READ_CONNECTIONS = 2;
/** How long one statement of the read pool may run (PostgresStoreOptions.readTimeoutMs). */
const READ_TIMEOUT_MS = 30_000;
/** How long /readyz waits for the database's answer: the acknowledgement wait (WRITE_STALL_MS). */
const HEALTH_WAIT_MS = 2_000;

/** The readiness probe's wait ended before the database answered. */
class ProbeDeadline extends Error {}

/** `p`, or a rejection once `ms` have passed without its answer (`p` runs on). */
function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ProbeDeadline(`the database did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Opens a batch's transaction: the head row made if missing, then locked and read, in one round trip. */
/**
 * The end of a write `WITH w AS (… RETURNING …)`: its rows, each with the change's NOTIFY, which
 * PostgreSQL sends when the write commits and never without it (ChangeFeed.notifyArgs). `at`: the
 * channel's parameter number; the payload's follows.
 */
function notifyFromW(at: number): string {
  return `SELECT w.*, pg_notify($${at}, $${at + 1}) AS notified FROM w`;
}

const LOCK_HEAD = `BEGIN; INSERT INTO chain_head (seq, hash) VALUES (0, '${GENESIS}') ON CONFLICT DO NOTHING;
  SELECT seq, hash FROM chain_head FOR UPDATE`;

/**
 * The batch's records with their place in the chain and their hashes, linked on from `head`, and
 * each as the JSON stored (serialised once, as it is hashed: server/core/chain.ts).
 */
function linkBatch(
  recs: NewInterception[],
  head: { seq: number; hash: string },
): { out: Interception[]; json: string[] } {
  let { seq, hash: prevHash } = head;
  const out: Interception[] = [];
  const json: string[] = [];
  for (const rec of recs) {
    const link = linkRecord(rec, ++seq, prevHash);
    prevHash = link.hash;
    out.push(link.record);
    json.push(link.json);
  }
  return { out, json };
}

/** A pool that handed out no connection for this long is stuck, not busy (`health`). */
const POOL_STUCK_MS = 30_000;

/** Ids of failed writes kept to be looked for when they come back (an outage's worth). */
const DOUBTFUL_LIMIT = 100_000;

/** How often a replica that writes records looks for rows an older bridge wrote (stale-rows.ts). */
const REPAIR_EVERY_MS = 60_000;

function headOf(recs: Interception[]): { seq: number; hash: string } {
  const last = recs.at(-1)!;
  return { seq: last.seq!, hash: last.hash! };
}

function recordOf(json: string): Interception {
  return JSON.parse(json) as Interception;
}

/** An `interceptions` row's searchable columns beside its record. */
interface ColumnsRow {
  seq: string;
  id: string;
  user_id: string;
  team: string | null;
  provider: string;
  api: string;
  model: string | null;
  client: string | null;
  session_id: string | null;
  status: string;
  started_at: Date;
  record: string;
}

/** The first column that does not say what the record says, as the batch wrote it (record-batch.ts). */
function columnAtOdds(row: ColumnsRow, rec: Interception): string | null {
  if (Number(row.seq) !== rec.seq) return 'seq';
  if (row.id !== rec.id) return 'id';
  if (row.user_id !== rec.userId) return 'user_id';
  if (row.team !== pgText(rec.team ?? null)) return 'team';
  if (row.provider !== rec.provider) return 'provider';
  if (row.api !== rec.api) return 'api';
  if (row.model !== pgText(rec.model ?? null)) return 'model';
  if (row.client !== pgText(rec.client ?? null)) return 'client';
  if (row.session_id !== pgText(rec.sessionId ?? null)) return 'session_id';
  if (row.status !== rec.status) return 'status';
  if (row.started_at.getTime() !== Date.parse(rec.startedAt)) return 'started_at';
  return null;
}

/**
 * Whether a row a user filter found is that user's by its record (the hashed JSON), not only by its
 * `user_id` column: a column rewritten behind the bridge's back must not hand one member's record
 * to another, as the embedded store's index cannot.
 */
function ownedBy(rec: Interception, filter: InterceptionFilter): boolean {
  return filter.userId === undefined || rec.userId === filter.userId;
}

/**
 * The store for teams that run several replicas: everything in one PostgreSQL database. Records
 * are written in batches off the request path, the hash chain linked under a lock on the chain's
 * head row, and rollups updated in the same transaction. Other replicas' document changes and live
 * events arrive by LISTEN/NOTIFY (change-feed.ts).
 */
export class PostgresStore implements Store {
  readonly kind = 'postgres';
  readonly shared = true;
  private readonly pool: pg.Pool;
  /**
   * Reads that walk records (searches, session and tool-call lists, exports, reports), on
   * connections of their own with a statement timeout: a member's search over long prompts ran 12 s
   * and more in the database, and a few of them, each cut off by its client and run on anyway, held
   * every pooled connection; the audit writes, key checks, budget leases and change notifications
   * of every request then failed on every replica for minutes. Here they wait for one another.
   */
  private readonly readPool: pg.Pool;
  /**
   * The same reads across every user (no user filter: an admin's incident search, an export, the
   * chain's verification), on connections members' reads never take: members' reads are always
   * of one user (their own), and two members' slow searches could otherwise hold every read
   * connection while the security team's search waited behind them.
   */
  private readonly orgReadPool: pg.Pool;
  private readonly batcher: Batcher<NewInterception, Interception>;
  /** When a pooled connection was last handed out: a pool that hands none out is not just busy. */
  private lastCheckoutAt = Date.now();
  /** Ids of records whose write failed: it may have been committed all the same. */
  private readonly doubtful = new Set<string>();
  private readonly feed: ChangeFeed;
  private readonly touched = new Map<string, string>();
  private touchTimer: NodeJS.Timeout | undefined;
  private staleSweepAt = 0;
  /** When this replica last looked for rows an older bridge wrote (stale-rows.ts), and the look running. */
  private repairAt = 0;
  private repairing: Promise<number> | undefined;
  /** A repair was asked for while one ran: another round follows it. */
  private repairAgain = false;
  private closing = false;
  /** Why the last batch of records failed, until one is written (health). */
  private writeFailing: Error | undefined;
  /** The readiness probe's query while one runs (health), and whether it has its connection yet. */
  private probing: Promise<number> | undefined;
  private probeConnected = false;
  /** The chain head as this replica last moved or read it (undefined: read it under a lock). */
  private knownHead: { seq: number; hash: string } | undefined;

  constructor(private readonly opts: PostgresStoreOptions) {
    this.pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.maxConnections ?? 10,
      connectionTimeoutMillis: 5000,
      // node-postgres closes a connection idle for 10 s by default: a bridge quiet for that long
      // then made its next requests wait for new connections (~40 ms each here) before their
      // records could be stored, and with AIBRIDGE_AUDIT_ACK=stored the answers' ends with them.
      idleTimeoutMillis: 10 * 60_000,
      // A pooled connection whose peer vanished (a failover leaving half-open sockets) is noticed.
      keepAlive: true,
    });
    const readPool = (max: number): pg.Pool => {
      const p = new pg.Pool({
        connectionString: opts.url,
        max,
        connectionTimeoutMillis: 5000,
        idleTimeoutMillis: 60_000,
        keepAlive: true,
        statement_timeout: opts.readTimeoutMs ?? READ_TIMEOUT_MS,
      });
      p.on('error', (err) => opts.onError?.(err, 'idle connection'));
      return p;
    };
    this.readPool = readPool(READ_CONNECTIONS);
    this.orgReadPool = readPool(ORG_READ_CONNECTIONS);
    this.pool.on('acquire', () => {
      this.lastCheckoutAt = Date.now();
    });
    // An idle connection the server dropped must not crash the process; the next query reconnects.
    this.pool.on('error', (err) => opts.onError?.(err, 'idle connection'));
    this.batcher = new Batcher((recs) => this.writeBatch(recs), {
      maxBatch: opts.maxBatch ?? 500,
      limit: opts.queueLimit ?? 10_000,
      intervalMs: opts.auditSyncMs ?? 0,
    });
    this.feed = new ChangeFeed(opts.url, this.pool, randomUUID(), opts.onError);
  }

  async open(): Promise<void> {
    const client = await this.pool.connect();
    try {
      if (this.opts.migrate !== false) await migrate(client);
      const applied = await appliedMigrations(client);
      if (applied < LATEST_MIGRATION) {
        throw new Error(
          `the database schema is at step ${applied} of ${LATEST_MIGRATION}; run aibridge migrate`,
        );
      }
    } finally {
      client.release();
    }
    await this.feed.start();
    this.repairSoon();
  }

  /**
   * Writes the derived columns again of rows an older bridge wrote (stale-rows.ts); resolves with
   * how many. Run at start and, while this replica writes records, once a minute: the older
   * replicas of a rolling upgrade write until the last of them stops.
   */
  repairStaleRows(): Promise<number> {
    this.repairAt = Date.now();
    // Asked while a round runs: that round's look may have come before the rows now asked about
    // (an older replica wrote them meanwhile), so one more round follows it.
    if (this.repairing) {
      this.repairAgain = true;
      return this.repairing;
    }
    this.repairAgain = false;
    this.repairing = (async () => {
      let repaired = 0;
      for (;;) {
        const n = await this.transaction(async (c) => {
          const rows = (await c.query<{ seq: string; record: string }>(STALE_ROWS)).rows;
          if (rows.length > 0) await c.query(repairStatement(rows));
          return rows.length;
        });
        repaired += n;
        // A replica stopping leaves the rest to the next round (its own or another replica's).
        if (this.closing) return repaired;
        // A short chunk ends the round, unless one more was asked for meanwhile.
        if (n < REPAIR_CHUNK) {
          if (!this.repairAgain) return repaired;
          this.repairAgain = false;
        }
      }
    })().finally(() => {
      this.repairing = undefined;
    });
    return this.repairing;
  }

  private repairSoon(): void {
    this.repairStaleRows().catch((err: unknown) => this.opts.onError?.(err as Error, 'stale row repair'));
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.batcher.flush();
    if (this.touchTimer) {
      clearTimeout(this.touchTimer);
      this.touchTimer = undefined;
      await this.flushTouches().catch((err: unknown) =>
        this.opts.onError?.(err as Error, 'key last-use update'),
      );
    }
    await this.feed.stop();
    await this.repairing?.catch(() => undefined);
    await this.readPool.end();
    await this.orgReadPool.end();
    await this.pool.end();
  }

  async health(): Promise<StoreHealth> {
    try {
      // One probe query at a time, waited on for HEALTH_WAIT_MS at most: a database that stopped
      // answering (paused, a lock held on the table) gets a prompt "not ready" with the reason,
      // not a probe that hangs, and probes every few seconds do not each pin a pooled connection.
      this.probing ??= this.probe().finally(() => {
        this.probing = undefined;
      });
      const applied = await withDeadline(this.probing, HEALTH_WAIT_MS);
      const migrations = { applied, latest: LATEST_MIGRATION };
      if (applied < LATEST_MIGRATION) return { ok: false, detail: 'schema migrations pending', migrations };
      if (this.batcher.waiting >= (this.opts.queueLimit ?? 10_000))
        return { ok: false, detail: 'audit write queue is full', migrations };
      // Ready means the store takes writes: a database that answers but refuses them (its disk
      // full) refuses every request under AIBRIDGE_AUDIT_FAILURE=closed, as the embedded store's does.
      if (this.writeFailing)
        return { ok: false, detail: `audit writes failing: ${this.writeFailing.message}`, migrations };
      return { ok: true, migrations };
    } catch (err) {
      // Every connection busy for the whole wait is load, not an outage: a replica taken out of
      // its load balancer for it would pass its load to the others, busy as well. A pool that has
      // handed out no connection for longer (all of them hung on a database that went away) is.
      // Still waiting for a pooled connection when the wait ended: every one in use, as above.
      const waitingForPool = err instanceof ProbeDeadline && !this.probeConnected;
      if ((isPoolExhausted(err) || waitingForPool) && Date.now() - this.lastCheckoutAt < POOL_STUCK_MS)
        return { ok: true, detail: 'database busy: every pooled connection in use' };
      return { ok: false, detail: `database unreachable: ${(err as Error).message}` };
    }
  }

  /** The probe's query on a connection of its own from the pool: a wait for one is load (health). */
  private async probe(): Promise<number> {
    this.probeConnected = false;
    const client = await this.pool.connect();
    this.probeConnected = true;
    try {
      const applied = await appliedMigrations(client);
      client.release();
      return applied;
    } catch (err) {
      // A connection whose query failed is not put back as it is.
      client.release(err as Error);
      throw err;
    }
  }

  // Users and keys

  async countUsers(): Promise<number> {
    const r = await this.query<{ n: string }>('SELECT count(*) AS n FROM users');
    return Number(r.rows[0]!.n);
  }

  async createUser(user: User): Promise<void> {
    try {
      await this.query('INSERT INTO users (id, email_lower, doc) VALUES ($1, $2, $3)', [
        user.id,
        user.email.toLowerCase(),
        JSON.stringify(user),
      ]);
    } catch (err) {
      // Another replica created the same email between the service's check and this insert.
      if ((err as { code?: string }).code === UNIQUE_VIOLATION)
        throw new BridgeError('user_exists', `A user with email ${user.email} already exists.`, {
          cause: err,
        });
      throw err;
    }
  }

  async getUserById(id: string): Promise<User | undefined> {
    const r = await this.query<{ doc: User }>('SELECT doc FROM users WHERE id = $1', [id]);
    return r.rows[0]?.doc;
  }

  async getUserByEmail(email: string): Promise<User | undefined> {
    const r = await this.query<{ doc: User }>('SELECT doc FROM users WHERE email_lower = $1', [
      email.toLowerCase(),
    ]);
    return r.rows[0]?.doc;
  }

  async listUsers(): Promise<User[]> {
    return (await this.query<{ doc: User }>('SELECT doc FROM users ORDER BY pos')).rows.map((r) => r.doc);
  }

  async updateUser(id: string, patch: UserPatch): Promise<User | undefined> {
    const change = { kind: 'user' as const, id };
    const r = await this.query<{ doc: User }>(
      `WITH w AS (UPDATE users SET doc = doc || $2::jsonb WHERE id = $1 RETURNING doc)
       ${notifyFromW(3)}`,
      [id, JSON.stringify(patch), ...this.feed.notifyArgs(change)],
    );
    if (r.rows[0]) this.feed.deliver(change);
    return r.rows[0]?.doc;
  }

  async createKey(key: KeyRecord): Promise<void> {
    await this.query('INSERT INTO bridge_keys (id, user_id, hash, doc) VALUES ($1, $2, $3, $4)', [
      key.id,
      key.userId,
      key.hash,
      JSON.stringify(key),
    ]);
  }

  async findKeyByHash(hash: string): Promise<KeyRecord | undefined> {
    const r = await this.query<{ doc: KeyRecord }>('SELECT doc FROM bridge_keys WHERE hash = $1', [hash]);
    return r.rows[0]?.doc;
  }

  async getKey(id: string): Promise<KeyRecord | undefined> {
    const r = await this.query<{ doc: KeyRecord }>('SELECT doc FROM bridge_keys WHERE id = $1', [id]);
    return r.rows[0]?.doc;
  }

  async listKeys(userId: string): Promise<KeyRecord[]> {
    const r = await this.query<{ doc: KeyRecord }>(
      'SELECT doc FROM bridge_keys WHERE user_id = $1 ORDER BY pos',
      [userId],
    );
    return r.rows.map((x) => x.doc);
  }

  async revokeKey(id: string, at: string): Promise<KeyRecord | undefined> {
    const change = { kind: 'key' as const, id };
    // The first revocation time stays: revoking twice changes nothing.
    const r = await this.query<{ doc: KeyRecord }>(
      `WITH w AS (UPDATE bridge_keys
          SET doc = CASE WHEN doc->>'revokedAt' IS NULL THEN jsonb_set(doc, '{revokedAt}', to_jsonb($2::text)) ELSE doc END
        WHERE id = $1 RETURNING doc)
       ${notifyFromW(3)}`,
      [id, at, ...this.feed.notifyArgs(change)],
    );
    if (r.rows[0]) this.feed.deliver(change);
    return r.rows[0]?.doc;
  }

  async pruneKeys(before: string): Promise<number> {
    // Nothing to tell other replicas: a key revoked or expired that long ago is refused by every
    // cache that still holds it.
    const r = await this.query(
      `DELETE FROM bridge_keys
        WHERE (doc->>'revokedAt')::timestamptz < $1::timestamptz
           OR (doc->>'expiresAt')::timestamptz < $1::timestamptz`,
      [before],
    );
    return r.rowCount ?? 0;
  }

  async renewKey(id: string, expiresAt: string): Promise<KeyRecord | undefined> {
    // Only forward, only live keys with an expiry: two replicas renewing at once both land on the later time.
    const change = { kind: 'key' as const, id };
    const r = await this.query<{ doc: KeyRecord }>(
      `WITH w AS (UPDATE bridge_keys
          SET doc = CASE
            WHEN doc->>'revokedAt' IS NULL AND doc->>'expiresAt' IS NOT NULL
                 AND (doc->>'expiresAt')::timestamptz < ($2::text)::timestamptz
            THEN jsonb_set(doc, '{expiresAt}', to_jsonb($2::text)) ELSE doc END
        WHERE id = $1 RETURNING doc)
       ${notifyFromW(3)}`,
      [id, expiresAt, ...this.feed.notifyArgs(change)],
    );
    if (r.rows[0]) this.feed.deliver(change);
    return r.rows[0]?.doc;
  }

  touchKey(id: string, at: string): void {
    this.touched.set(id, at);
    if (this.touchTimer) return;
    this.touchTimer = setTimeout(() => {
      this.touchTimer = undefined;
      this.flushTouches().catch((err: unknown) => this.opts.onError?.(err as Error, 'key last-use update'));
    }, 5000);
    this.touchTimer.unref();
  }

  private async flushTouches(): Promise<void> {
    const entries = [...this.touched];
    this.touched.clear();
    if (entries.length === 0) return;
    await this.query(
      `UPDATE bridge_keys k SET doc = jsonb_set(k.doc, '{lastUsedAt}', to_jsonb(t.at))
         FROM unnest($1::text[], $2::text[]) AS t(id, at) WHERE k.id = t.id`,
      [entries.map((e) => e[0]), entries.map((e) => e[1])],
    );
  }

  // Interceptions

  appendInterception(rec: NewInterception): Promise<Interception> {
    return this.batcher.push(rec);
  }

  /**
   * A batch linked to the head this replica last wrote or read goes in one statement that writes
   * nothing if another replica moved the head meanwhile (record-batch.ts). Then, or with no head
   * known, it goes in a transaction that locks the head row first: three round trips, and no
   * replica can starve another.
   */
  private async writeBatch(recs: NewInterception[]): Promise<Interception[]> {
    if (Date.now() - this.repairAt > (this.opts.repairEveryMs ?? REPAIR_EVERY_MS)) this.repairSoon();
    try {
      const out = await this.linkAndWrite(
        recs,
        recs.some((r) => this.doubtful.has(r.id)),
      );
      for (const r of recs) this.doubtful.delete(r.id);
      this.writeFailing = undefined;
      return out;
    } catch (err) {
      // Busy is load, as in health(); anything else (a full disk, a refused insert) is not ready.
      if (!isPoolExhausted(err)) this.writeFailing = err as Error;
      // Maybe written after all (a COMMIT whose answer was lost): when they come back, they are
      // looked for first. Bounded: an outage's worth of ids, not a leak.
      if (this.doubtful.size > DOUBTFUL_LIMIT) this.doubtful.clear();
      for (const r of recs) this.doubtful.add(r.id);
      throw err;
    }
  }

  private async linkAndWrite(recs: NewInterception[], doubtful: boolean): Promise<Interception[]> {
    const known = doubtful ? undefined : this.knownHead;
    this.knownHead = undefined;
    if (known) {
      const { out, json } = linkBatch(recs, known);
      const to = headOf(out);
      const st = batchStatement(out, json, { from: known, to });
      const r = await this.query<{ n: number }>(st);
      if (r.rows[0]?.n === 1) {
        this.knownHead = to;
        return out;
      }
    }
    const { out, to } = await this.transaction(async (c, begun) => {
      const rows = (begun as pg.QueryResult<{ seq: string; hash: string }>[]).at(-1)!.rows;
      const head = { seq: Number(rows[0]!.seq), hash: rows[0]!.hash };
      // A write whose COMMIT went through while its connection broke was reported failed and its
      // records come back: already stored, linked again they would be in the audit twice (and
      // counted twice in the rollups).
      const present = doubtful
        ? await c.query<{ record: string }>('SELECT record FROM interceptions WHERE id = ANY($1::text[])', [
            recs.map((r) => r.id),
          ])
        : { rows: [] };
      const stored = new Map(present.rows.map((r) => [recordOf(r.record).id, recordOf(r.record)]));
      const fresh = stored.size === 0 ? recs : recs.filter((r) => !stored.has(r.id));
      if (fresh.length === 0) return { out: recs.map((r) => stored.get(r.id)!), to: head };
      const { out, json } = linkBatch(fresh, head);
      const to = headOf(out);
      await c.query(batchStatement(out, json, { to }));
      if (stored.size === 0) return { out, to };
      const linked = new Map(out.map((r) => [r.id, r]));
      return { out: recs.map((r) => stored.get(r.id) ?? linked.get(r.id)!), to };
    }, LOCK_HEAD);
    this.knownHead = to;
    return out;
  }

  /**
   * Records copied from another store as they are (seq, links and hashes kept), after whatever
   * this database holds; for `aibridge store copy`. Rollups and tool results are rebuilt from them.
   */
  async importInterceptions(recs: Interception[]): Promise<void> {
    if (recs.length === 0) return;
    const last = recs.at(-1)!;
    await this.transaction(async (c) => {
      await c.query('INSERT INTO chain_head (seq, hash) VALUES (0, $1) ON CONFLICT DO NOTHING', [GENESIS]);
      await c.query(
        batchStatement(
          recs,
          recs.map((r) => JSON.stringify(r)),
          { to: { seq: last.seq!, hash: last.hash ?? GENESIS } },
        ),
      );
    });
    this.knownHead = undefined;
  }

  /**
   * Rollups of records the source no longer holds (`aibridge store copy` from an embedded store
   * whose retention pruned them: pruned-rollups.ts), summed into the buckets, so budget periods and
   * usage reports longer than its retention window come across whole.
   */
  async importBuckets(buckets: readonly UsageBucket[]): Promise<void> {
    for (let i = 0; i < buckets.length; i += IMPORT_BUCKETS_CHUNK) {
      const bs = buckets.slice(i, i + IMPORT_BUCKETS_CHUNK);
      await this.query(
        `INSERT INTO usage_buckets AS u
           (hour, user_id, provider, model, client, model_is_null, user_email, team, requests,
            input, output, cache_read, cache_write, reasoning, cost_usd, unpriced_requests,
            user_billed_cost_usd, user_billed_requests)
         SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::boolean[], $7::text[], $8::text[], $9::bigint[], $10::bigint[],
                              $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::float8[],
                              $16::bigint[], $17::float8[], $18::bigint[])
         ${BUCKET_SUMS}`,
        [
          bs.map((b) => b.hour),
          bs.map((b) => b.userId),
          bs.map((b) => b.provider),
          bs.map((b) => pgText(b.model) ?? ''),
          bs.map((b) => pgText(b.client)),
          bs.map((b) => b.model === null),
          bs.map((b) => pgText(b.userEmail)),
          bs.map((b) => pgText(b.team)),
          bs.map((b) => b.requests),
          bs.map((b) => b.usage.input),
          bs.map((b) => b.usage.output),
          bs.map((b) => b.usage.cacheRead),
          bs.map((b) => b.usage.cacheWrite),
          bs.map((b) => b.usage.reasoning),
          bs.map((b) => b.costUsd),
          bs.map((b) => b.unpricedRequests),
          bs.map((b) => b.userBilledCostUsd),
          bs.map((b) => b.userBilledRequests),
        ],
      );
    }
  }

  /**
   * The head a copied chain had where it came from (`aibridge store copy`), when it is past the
   * last record copied: records cut from the source's tail stay missing in the copy.
   */
  async importChainHead(head: ChainHead): Promise<void> {
    await this.query('UPDATE chain_head SET seq = $1, hash = $2 WHERE seq < $1', [head.seq, head.hash]);
    this.knownHead = undefined;
  }

  async *scanForVerify(odd: (at: ColumnAtOdds) => void): AsyncIterable<Interception> {
    let after = 0;
    for (;;) {
      const r = await this.read<ColumnsRow>(
        undefined,
        `SELECT seq, id, user_id, team, provider, api, model, client, session_id, status, started_at, record
           FROM interceptions WHERE seq > $1 ORDER BY seq LIMIT ${SCAN_CHUNK}`,
        [after],
      );
      for (const row of r.rows) {
        const rec = recordOf(row.record);
        after = Number(row.seq);
        const column = columnAtOdds(row, rec);
        if (column !== null) odd({ seq: Number(row.seq), id: row.id, column });
        yield rec;
      }
      if (r.rows.length < SCAN_CHUNK) return;
    }
  }

  /** Each tool call with its result, where a later record reported one. */
  private async linked(recs: Interception[]): Promise<Interception[]> {
    // As the index keeps them (record-batch.ts): a call id is a string the model or client chose,
    // keyed within its user. Results written before that were keyed by the call id alone: still
    // read for the calls made before them (every later call is keyed the new way).
    const keyOf = (rec: Interception, id: string): string => pgText(toolResultKey(rec.userId, id))!;
    const ids = recs.flatMap((r) => r.toolCalls.flatMap((c) => [keyOf(r, c.id), pgText(c.id)!]));
    if (ids.length === 0) return recs;
    const r = await this.query<{
      call_id: string;
      at: string;
      is_error: boolean;
      interception_id: string;
    }>('SELECT call_id, at, is_error, interception_id FROM tool_results WHERE call_id = ANY($1::text[])', [
      ids,
    ]);
    const results = new Map(
      r.rows.map((x) => [x.call_id, { at: x.at, isError: x.is_error, interceptionId: x.interception_id }]),
    );
    type Linked = { at: string; isError: boolean; interceptionId: string };
    const legacy = (x: Linked | undefined, rec: Interception): Linked | null =>
      x !== undefined && x.at >= rec.startedAt ? x : null;
    return recs.map((rec) =>
      rec.toolCalls.length === 0
        ? rec
        : {
            ...rec,
            toolCalls: rec.toolCalls.map((c) => ({
              ...c,
              result: results.get(keyOf(rec, c.id)) ?? legacy(results.get(pgText(c.id)!), rec),
            })),
          },
    );
  }

  async listInterceptions(
    filter: InterceptionFilter,
    limit: number,
    cursor?: string,
  ): Promise<Page<Interception>> {
    const w = interceptionWhere(filter);
    if (cursor !== undefined) w.add('seq < $?', decodeCursor(cursor));
    const r = await this.read<{ record: string }>(
      filter.userId,
      `SELECT record FROM interceptions WHERE ${w.sql} ORDER BY seq DESC LIMIT ${Math.max(0, Math.floor(limit)) + 1}`,
      w.params,
    );
    const more = r.rows.length > limit;
    const items = await this.linked(
      r.rows
        .slice(0, limit)
        .map((x) => recordOf(x.record))
        .filter((rec) => ownedBy(rec, filter)),
    );
    return { items, nextCursor: more && items.length > 0 ? encodeCursor(items.at(-1)!.seq) : null };
  }

  async getInterception(id: string): Promise<Interception | undefined> {
    const r = await this.query<{ record: string }>(
      'SELECT record FROM interceptions WHERE id = $1 ORDER BY seq LIMIT 1',
      [id],
    );
    const row = r.rows[0];
    return row ? (await this.linked([recordOf(row.record)]))[0] : undefined;
  }

  async responseOwner(responseId: string): Promise<string | undefined> {
    // The column holds what pgText made of the id (an upstream's NUL dropped); the newest record
    // wins, as on the embedded store, should an upstream ever hand out an id twice.
    const r = await this.query<{ user_id: string }>(
      'SELECT user_id FROM interceptions WHERE response_id = $1 ORDER BY seq DESC LIMIT 1',
      [pgText(responseId)],
    );
    return r.rows[0]?.user_id;
  }

  async responseItemOwners(ids: readonly string[]): Promise<Map<string, string | null>> {
    const owners = new Map<string, string | null>();
    if (ids.length === 0) return owners;
    // As responseOwner: the column holds pgText of each id (ids that differ only by a NUL share one).
    const wanted = new Map<string, string[]>();
    for (const id of ids) {
      const stored = pgText(id)!;
      const same = wanted.get(stored);
      if (same) same.push(id);
      else wanted.set(stored, [id]);
    }
    // One row per id found, however many records repeat it (an OpenAI-compatible server's ids).
    // An id in more than ITEM_RECORDS_LIMIT records is no unique item id: nobody's, as on the
    // embedded store, which stops reading there.
    const r = await this.query<{ item: string; lo: string; hi: string; n: number }>(
      `SELECT item, min(user_id) AS lo, max(user_id) AS hi, count(*)::int AS n
         FROM interceptions, unnest(response_items) AS item
        WHERE response_items && $1::text[] AND item = ANY($1::text[])
        GROUP BY item`,
      [[...wanted.keys()]],
    );
    for (const row of r.rows)
      for (const id of wanted.get(row.item) ?? [])
        owners.set(id, row.lo === row.hi && row.n <= ITEM_RECORDS_LIMIT ? row.lo : null);
    return owners;
  }

  async *scanInterceptions(filter: InterceptionFilter): AsyncIterable<Interception> {
    let after = 0;
    for (;;) {
      const w = interceptionWhere(filter);
      w.add('seq > $?', after);
      const r = await this.read<{ record: string }>(
        filter.userId,
        `SELECT record FROM interceptions WHERE ${w.sql} ORDER BY seq LIMIT ${SCAN_CHUNK}`,
        w.params,
      );
      for (const row of r.rows) {
        const rec = recordOf(row.record);
        after = rec.seq;
        if (ownedBy(rec, filter)) yield rec;
      }
      if (r.rows.length < SCAN_CHUNK) return;
    }
  }

  /**
   * Deletes the oldest records, in append order, up to the first one that started at or after
   * `before`: a prefix of the chain, so what is kept still verifies from its oldest record.
   */
  async pruneInterceptions(before: string): Promise<number> {
    const first = await this.query<{ seq: string }>(
      'SELECT seq FROM interceptions WHERE started_at >= $1::timestamptz ORDER BY seq LIMIT 1',
      [before],
    );
    // The newest record always stays: the chain head points at it, and with no record left the
    // head could not tell a chain pruned to nothing from one whose records were deleted.
    const newest = await this.query<{ seq: string | null }>('SELECT max(seq) AS seq FROM interceptions');
    const keepFrom = Math.min(
      first.rows[0] ? Number(first.rows[0].seq) : Number.MAX_SAFE_INTEGER,
      newest.rows[0]?.seq == null ? Number.MAX_SAFE_INTEGER : Number(newest.rows[0].seq),
    );
    // The chain's start moves before the records go: a verify meanwhile skips those about to.
    const kept = await this.query<{ seq: string; record: string }>(
      'SELECT seq, record FROM interceptions WHERE seq >= $1 ORDER BY seq LIMIT 1',
      [keepFrom],
    );
    const k = kept.rows[0];
    const prev = k ? (JSON.parse(k.record) as { prevHash?: string }).prevHash : undefined;
    // Only ever forward: replicas pruning at once (each at start-up) with cutoffs a moment apart
    // must leave the start the furthest of them deleted to, whichever writes last.
    if (k && prev !== undefined)
      await this.query(
        `INSERT INTO bridge_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value
           WHERE (bridge_settings.value::jsonb->>'afterSeq')::bigint < (EXCLUDED.value::jsonb->>'afterSeq')::bigint`,
        ['chain_anchor', anchorJson({ afterSeq: Number(k.seq) - 1, hash: prev })],
      );
    let total = 0;
    for (;;) {
      const r = await this.query(
        `DELETE FROM interceptions WHERE seq IN
           (SELECT seq FROM interceptions WHERE seq < $1 ORDER BY seq LIMIT ${PRUNE_CHUNK})`,
        [keepFrom],
      );
      total += r.rowCount ?? 0;
      if ((r.rowCount ?? 0) < PRUNE_CHUNK) return total;
    }
  }

  async chainHead(): Promise<ChainHead> {
    const r = await this.query<{ seq: string; hash: string }>('SELECT seq, hash FROM chain_head');
    const row = r.rows[0];
    return row ? { seq: Number(row.seq), hash: row.hash } : { ...EMPTY_HEAD };
  }

  async getSetting(name: StoreSetting): Promise<string | undefined> {
    const r = await this.query<{ value: string }>('SELECT value FROM bridge_settings WHERE name = $1', [
      name,
    ]);
    return r.rows[0]?.value;
  }

  async claimSetting(name: StoreSetting, value: string): Promise<string> {
    await this.query('INSERT INTO bridge_settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING', [
      name,
      value,
    ]);
    const r = await this.query<{ value: string }>('SELECT value FROM bridge_settings WHERE name = $1', [
      name,
    ]);
    return r.rows[0]!.value;
  }

  async appendAccessLog(entry: AccessLogEntry): Promise<void> {
    await this.query('INSERT INTO access_log (at, doc) VALUES ($1, $2)', [entry.at, JSON.stringify(entry)]);
  }

  async appendGatewayCall(call: GatewayToolCall): Promise<void> {
    await this.query(
      'INSERT INTO mcp_gateway_calls (at, user_id, server, name, doc) VALUES ($1, $2, $3, $4, $5)',
      [call.at, call.userId, call.server, call.name, JSON.stringify(call)],
    );
  }

  async listGatewayCalls(q: GatewayCallQuery): Promise<GatewayToolCall[]> {
    const w = new Where();
    if (q.since !== undefined) w.add('at >= $?::timestamptz', q.since);
    if (q.until !== undefined) w.add('at < $?::timestamptz', q.until);
    if (q.userId !== undefined) w.add('user_id = $?', q.userId);
    if (q.server !== undefined) w.add('server = $?', q.server);
    if (q.name !== undefined) w.add('name = $?', q.name);
    const r = await this.read<{ doc: GatewayToolCall }>(
      q.userId,
      `SELECT doc FROM mcp_gateway_calls WHERE ${w.sql} ORDER BY at DESC, pos DESC LIMIT ${Math.max(0, Math.floor(q.limit))}`,
      w.params,
    );
    return r.rows.map((x) => x.doc);
  }

  async *scanGatewayCalls(q: {
    since?: string | undefined;
    until?: string | undefined;
    userId?: string | undefined;
  }): AsyncIterable<GatewayToolCall> {
    let after = 0;
    for (;;) {
      const w = new Where();
      if (q.since !== undefined) w.add('at >= $?::timestamptz', q.since);
      if (q.until !== undefined) w.add('at < $?::timestamptz', q.until);
      if (q.userId !== undefined) w.add('user_id = $?', q.userId);
      w.add('pos > $?', after);
      const r = await this.read<{ pos: string; doc: GatewayToolCall }>(
        q.userId,
        `SELECT pos, doc FROM mcp_gateway_calls WHERE ${w.sql} ORDER BY pos LIMIT ${SCAN_CHUNK}`,
        w.params,
      );
      for (const row of r.rows) {
        after = Number(row.pos);
        yield row.doc;
      }
      if (r.rows.length < SCAN_CHUNK) return;
    }
  }

  async pruneGatewayCalls(before: string): Promise<number> {
    let total = 0;
    for (;;) {
      const r = await this.query(
        `DELETE FROM mcp_gateway_calls WHERE pos IN
           (SELECT pos FROM mcp_gateway_calls WHERE at < $1::timestamptz ORDER BY pos LIMIT ${PRUNE_CHUNK})`,
        [before],
      );
      total += r.rowCount ?? 0;
      if ((r.rowCount ?? 0) < PRUNE_CHUNK) return total;
    }
  }

  async listAccessLog(q: { since?: string | undefined; limit: number }): Promise<AccessLogEntry[]> {
    const w = new Where();
    if (q.since !== undefined) w.add('at >= $?::timestamptz', q.since);
    const r = await this.query<{ doc: AccessLogEntry }>(
      `SELECT doc FROM access_log WHERE ${w.sql} ORDER BY pos DESC LIMIT ${Math.max(0, Math.floor(q.limit))}`,
      w.params,
    );
    return r.rows.map((x) => x.doc);
  }

  // Rollups, documents, alerts

  async usageBuckets(q: BucketQuery): Promise<UsageBucket[]> {
    const w = new Where();
    if (q.since !== undefined) w.add('hour >= $?::timestamptz', hourOf(q.since));
    if (q.until !== undefined) w.add('hour < $?::timestamptz', q.until);
    if (q.userId !== undefined) w.add('user_id = $?', q.userId);
    if (q.team !== undefined) w.add('team = $?', q.team);
    // Numbers as float8 and the hour as epoch milliseconds: no per-row string or date parsing in
    // the driver (a year of rollups is hundreds of thousands of rows). Sums stay exact below 2^53.
    const r = await this.read<Row>(
      q.userId,
      `SELECT (extract(epoch FROM hour) * 1000)::float8 AS hour_ms, user_id, user_email, team, provider,
              model, model_is_null, client, requests::float8, input::float8, output::float8,
              cache_read::float8, cache_write::float8, reasoning::float8, cost_usd, unpriced_requests::float8,
              user_billed_cost_usd, user_billed_requests::float8
         FROM usage_buckets WHERE ${w.sql}`,
      w.params,
    );
    return r.rows.map((x) => ({
      hour: new Date(x.hour_ms as number).toISOString(),
      userId: x.user_id as string,
      userEmail: x.user_email as string,
      team: x.team as string | null,
      provider: x.provider as string,
      model: x.model_is_null ? null : (x.model as string),
      client: x.client as string,
      requests: x.requests as number,
      usage: {
        input: x.input as number,
        output: x.output as number,
        cacheRead: x.cache_read as number,
        cacheWrite: x.cache_write as number,
        reasoning: x.reasoning as number,
      },
      costUsd: x.cost_usd as number,
      unpricedRequests: x.unpriced_requests as number,
      userBilledCostUsd: x.user_billed_cost_usd as number,
      userBilledRequests: x.user_billed_requests as number,
    }));
  }

  async lastRequestAt(): Promise<Map<string, string>> {
    const r = await this.query<{ user_id: string; ms: number }>(
      'SELECT user_id, (extract(epoch FROM last_at) * 1000)::float8 AS ms FROM user_last_request',
    );
    return new Map(r.rows.map((x) => [x.user_id, new Date(x.ms).toISOString()]));
  }

  async listDocs<T>(kind: DocKind): Promise<T[]> {
    const r = await this.query<{ doc: T }>('SELECT doc FROM docs WHERE kind = $1 ORDER BY pos', [kind]);
    return r.rows.map((x) => x.doc);
  }

  async getDoc<T>(kind: DocKind, id: string): Promise<T | undefined> {
    const r = await this.query<{ doc: T }>('SELECT doc FROM docs WHERE kind = $1 AND id = $2', [kind, id]);
    return r.rows[0]?.doc;
  }

  async putDoc<T>(kind: DocKind, id: string, doc: T): Promise<void> {
    await this.query(
      `WITH w AS (INSERT INTO docs (kind, id, doc) VALUES ($1, $2, $3)
         ON CONFLICT (kind, id) DO UPDATE SET doc = EXCLUDED.doc RETURNING 1)
       ${notifyFromW(4)}`,
      [kind, id, JSON.stringify(doc), ...this.feed.notifyArgs({ kind: 'doc', docKind: kind })],
    );
    this.docChanged(kind);
  }

  async deleteDoc(kind: DocKind, id: string): Promise<boolean> {
    const r = await this.query(
      `WITH w AS (DELETE FROM docs WHERE kind = $1 AND id = $2 RETURNING 1)
       ${notifyFromW(3)}`,
      [kind, id, ...this.feed.notifyArgs({ kind: 'doc', docKind: kind })],
    );
    const deleted = (r.rowCount ?? 0) > 0;
    if (deleted) this.docChanged(kind);
    return deleted;
  }

  /**
   * This replica's own watchers hear of a document write (the others hear its NOTIFY, sent in the
   * write's statement), so that a reload of the kind under way here, which may have read the
   * documents before the write, runs again instead of putting back what was there (a budget
   * lowered here, then raised again by it).
   */
  private docChanged(kind: DocKind): void {
    this.feed.deliver({ kind: 'doc', docKind: kind, local: true });
  }

  async appendAlert(alert: Alert): Promise<void> {
    await this.query('INSERT INTO alerts (at, user_id, doc) VALUES ($1, $2, $3)', [
      alert.at,
      alert.userId,
      JSON.stringify(alert),
    ]);
  }

  async listAlerts(q: AlertQuery): Promise<Alert[]> {
    const w = new Where();
    if (q.since !== undefined) w.add('at >= $?::timestamptz', q.since);
    if (q.userId !== undefined) w.add('user_id = $?', q.userId);
    if (q.exceptRules && q.exceptRules.length > 0)
      w.add("NOT (doc->>'rule' = ANY($?::text[]))", q.exceptRules);
    const r = await this.read<{ doc: Alert }>(
      q.userId,
      `SELECT doc FROM alerts WHERE ${w.sql} ORDER BY pos DESC LIMIT ${Math.max(0, Math.floor(q.limit))}`,
      w.params,
    );
    return r.rows.map((x) => x.doc);
  }

  // Budgets: one ledger per budget and period, shared by every replica

  async reserveBudgets(
    interceptionId: string,
    claims: BudgetClaim[],
    amountUsd: number,
  ): Promise<ReserveOutcome> {
    if (claims.length === 0) return { ok: true, ledgers: [] };
    if (Date.now() - this.staleSweepAt > 60_000) {
      this.staleSweepAt = Date.now();
      ledgers
        .dropStaleReservations(this.pool)
        .catch((err: unknown) => this.opts.onError?.(err as Error, 'reservations'));
    }
    return this.transaction((c) => ledgers.reserveBudgets(c, interceptionId, claims, amountUsd));
  }

  async settleBudgets(interceptionId: string, charges: BudgetCharge[]): Promise<BudgetSettlement[]> {
    return this.transaction((c) => ledgers.settleBudgets(c, interceptionId, charges));
  }

  async leaseBudget(leaseId: string, claim: BudgetClaim, sizing: LeaseSizing): Promise<LeaseOutcome> {
    return this.transaction((c) => ledgers.leaseBudget(c, leaseId, claim, sizing));
  }

  async budgetLedgers(claims: BudgetClaim[]): Promise<BudgetLedger[]> {
    if (claims.length === 0) return [];
    return this.transaction((c) => ledgers.budgetLedgers(c, claims));
  }

  // Replicas

  watch(listener: (change: StoreChange) => void): () => void {
    return this.feed.subscribe(listener);
  }

  broadcast(change: StoreChange): void {
    this.feed.notify(change);
  }

  /**
   * A read that walks records: on a read pool, under its statement timeout (see readPool); `userId`:
   * the one user it reads, undefined for a read across every user (orgReadPool).
   */
  private async read<R extends pg.QueryResultRow>(
    userId: string | undefined,
    text: string | pg.QueryConfig,
    params?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await (userId === undefined ? this.orgReadPool : this.readPool).query<R>(text, params);
    } catch (err) {
      // 57014: canceled by the statement timeout.
      if ((err as { code?: unknown }).code === '57014')
        throw new BridgeError(
          'search_timeout',
          `The read ran past ${(this.opts.readTimeoutMs ?? READ_TIMEOUT_MS) / 1000} s in the database and was stopped: narrow it (a shorter time range, one user, a longer search text).`,
          { cause: err },
        );
      throw asStoreError(err);
    }
  }

  /** Every statement outside a transaction goes through here, so an outage reads as `store_unavailable`. */
  private async query<R extends pg.QueryResultRow>(
    text: string | pg.QueryConfig,
    params?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, params);
    } catch (err) {
      throw asStoreError(err);
    }
  }

  /** `begin`: what opens the transaction (a simple query, maybe several statements); its result goes to `work`. */
  private async transaction<T>(
    work: (c: pg.PoolClient, begun: unknown) => Promise<T>,
    begin = 'BEGIN',
  ): Promise<T> {
    let c: pg.PoolClient;
    try {
      c = await this.pool.connect();
    } catch (err) {
      throw asStoreError(err);
    }
    let broken = false;
    try {
      const begun: unknown = await c.query(begin);
      const out = await work(c, begun);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      broken = isUnreachable(err);
      // The transaction's own error is the one that matters (thrown below); a broken connection cannot roll back.
      await c.query('ROLLBACK').catch(() => undefined);
      throw asStoreError(err);
    } finally {
      // A connection that failed is not given back to the pool.
      c.release(broken);
    }
  }
}
