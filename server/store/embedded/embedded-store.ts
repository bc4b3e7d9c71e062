import fs from 'node:fs/promises';
import path from 'node:path';
import { Low } from 'lowdb';
import type { User } from '../../../shared/identity';
import type { GatewayToolCall, Interception, Page } from '../../../shared/interception';
import type { Alert } from '../../../shared/spend';
import {
  anchorJson,
  type ChainAnchor,
  type ChainHead,
  EMPTY_HEAD,
  GENESIS,
  linkRecord,
  UnreadableRecordError,
} from '../../core/chain';
import type { KeyRecord } from '../../core/principal';
import { RecentMap } from '../../core/recent-map';
import {
  addToBucket,
  addToBuckets,
  type BucketQuery,
  bucketKey,
  canonicalIso,
  hourOf,
  OTHER_MODELS,
  type UsageBucket,
} from '../../core/rollup';
import { nextTurn } from '../../core/turns';
import { BridgeError } from '../../errors';
import { decodeCursor, encodeCursor } from '../cursor';
import { promptMatches, textSearch } from '../search-text';
import { toolResultKey } from '../tool-result-key';
import type {
  AccessLogEntry,
  AlertQuery,
  BudgetCharge,
  BudgetClaim,
  BudgetLedger,
  BudgetSettlement,
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
import { AtomicJsonFile } from './atomic-json-file';
import { bucketsToColumns, columnsToBuckets } from './bucket-columns';
import { MemoryBudgetLedgers } from './budget-ledgers';
import {
  CHECKPOINT_FILE,
  type CheckpointRead,
  dropCheckpoint,
  lineSumAt,
  readCheckpoint,
  segmentSizes,
  tailMisfit,
  writeCheckpoint,
} from './checkpoint';
import { DataDirLock } from './dir-lock';
import {
  type EntryLoc,
  Journal,
  type JournalPlace,
  type JournalWarning,
  lineJson,
  SEGMENT_RE,
} from './journal';
import {
  copyBucket,
  FOLD_AFTER_DAYS,
  foldedByDay,
  PrunedRollups,
  PrunedSums,
  sumBucket,
} from './pruned-rollups';
import { RecentLines } from './recent-lines';
import { INDEX_COLUMNS, indexCapacity, RecordIndex, type RecordIndexState } from './record-index';

interface DbShape {
  version: 1;
  users: User[];
  keys: KeyRecord[];
  docs?: Partial<Record<DocKind, Record<string, unknown>>>;
  alerts?: Alert[];
  settings?: Partial<Record<StoreSetting, string>>;
  /** The journal's chain head, kept apart from it (written at most once per HEAD_FLUSH_MS). */
  chainHead?: ChainHead;
}

/** Tool results remembered for linking to their calls. */
const RESULTS_KEPT = 200_000;

/** Usage buckets copied between two turns of the event loop (usageBuckets). */
const BUCKETS_PER_TURN = 10_000;

/** Access-log entries kept in memory for listing. */
const ACCESS_KEPT = 10_000;
/** MCP gateway calls listed from memory (older ones stay in the journal on disk). */
const GATEWAY_KEPT = 50_000;

/** Newest records kept whole in memory. */
const RECENT_KEPT = 2000;
/** A user's newest rollup buckets a record is matched against before its key is built. */
const RECENT_BUCKETS = 4;
/**
 * Records read back from the journal together (readBatches): at most this many… A batch's records
 * are parsed (and searched) without a pause for other requests: at 1 MB a batch held the event
 * loop ~20 ms, which a member's text search over their own records would cost everyone each time.
 */
const READ_BATCH = 64;
/** …or this many bytes of them. */
const READ_BATCH_BYTES = 128 * 1024;
/** db.json's format; a later one is refused at start. */
const DB_VERSION = 1;
/**
 * Buckets of distinct (provider, model, client) a user has in one hour before further models of
 * that hour are summed under OTHER_MODELS (the embedded store keeps every bucket in memory).
 */
export const MODELS_PER_USER_HOUR = 64;

const DAY_MS = 86_400_000;
/** The bytes those lines may take: about 2 KiB each, more than a usual record's line. */
const RECENT_BYTES = 4 * 1024 * 1024;

/**
 * How long a new chain head may wait before live.json is rewritten with it: one small write a
 * second under load, never one per record. A tail cut within this window after the last write goes unseen.
 */
const HEAD_FLUSH_MS = 1000;

/** Alerts kept (alerts.json); older ones are dropped (they were delivered and published when raised). */
const ALERTS_KEPT = 10_000;

/**
 * What changes under load is kept out of db.json: the chain head (every second, live.json) and keys'
 * last-use times (every few seconds, key-use.json). db.json holds every user, key, document and
 * setting, so rewriting it serialised all of them on the event loop: ~14–35 ms each time with 1,000
 * users and 10,000 kept alerts, ~110 ms with 10,000 users (docs/performance.md#small-side-files).
 */
interface LiveState {
  chainHead?: ChainHead;
}

interface KeyUse {
  /** Key id → last use (ISO 8601), for each key that has one. */
  lastUsed: Record<string, string>;
}

interface AlertsFile {
  alerts: Alert[];
}

export interface EmbeddedStoreOptions {
  dataDir: string;
  onWarning?: (w: JournalWarning) => void;
  /** How long last-use times may wait before they are written (they are informative only). */
  touchFlushMs?: number;
  /** Journal segment size; retention drops whole segments. */
  segmentBytes?: number;
  /** Group commit of interception records (AIBRIDGE_AUDIT_SYNC_MS; JournalOptions.syncIntervalMs). */
  auditSyncMs?: number;
  /** Another process took the data dir (dir-lock.ts): the store has stopped writing to it. */
  onLockLost?: (reason: string) => void;
}

/** An admin change applied in memory (EmbeddedStore.change): its answer, how to take it back, what follows once written. */
interface Change<T> {
  result: T;
  /** Absent: nothing changed (the answer is still given only once the write it waited on is durable). */
  undo?: () => void;
  written?: () => void;
}

interface AppliedChange {
  change: Change<unknown>;
  resolve: (v: unknown) => void;
  reject: (err: unknown) => void;
}

/** Runs a change's undo or follow-up; one that throws must not leave the other callers waiting. */
function settle(step: () => void): void {
  try {
    step();
  } catch {
    // Nothing to do: the undos and follow-ups are plain assignments and announcements.
  }
}

/**
 * A best-effort write made at most once per `ms`: the first change starts the timer, later ones
 * ride on it, and `flush` writes at once what is pending (at close).
 */
class WriteSoon {
  private timer: NodeJS.Timeout | undefined;
  /** The write the timer started, awaited by `flush`: a close must not return while it is under way. */
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly ms: number,
    private readonly write: () => Promise<void>,
  ) {}

  soon(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // Best effort: what these files hold is informative or bounded-late (docs/audit.md), and a
      // data dir that cannot be written fails the next user, key or document write loudly.
      this.running = this.write().catch(() => undefined);
    }, this.ms);
    this.timer.unref();
  }

  async flush(): Promise<void> {
    if (!this.timer) {
      // A write the timer started may still be under way: the next process to open the data dir
      // would read the file before it (a chain head 39 records behind the journal).
      await this.running;
      return;
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.write();
  }
}

function newerHead(a: ChainHead | undefined, b: ChainHead | undefined): ChainHead | undefined {
  if (!a) return b;
  if (!b) return a;
  return a.seq >= b.seq ? a : b;
}

/**
 * The default store: users and keys in a lowdb JSON file replaced atomically on each change,
 * interceptions in an append-only journal (never a rewrite of one growing file per request).
 */
export class EmbeddedStore implements Store {
  readonly kind = 'embedded';
  /** One process owns the data dir. */
  readonly shared = false;
  private readonly db: Low<DbShape>;
  private readonly journal: Journal;
  /** This process's hold on the data dir, from open to close (dir-lock.ts). */
  private lock: DataDirLock | undefined;
  /** Why this process no longer holds the data dir (loseLock). */
  private lockLost: string | undefined;
  private readonly usersById = new Map<string, User>();
  private readonly usersByEmail = new Map<string, User>();
  private readonly keysById = new Map<string, KeyRecord>();
  private readonly keysByHash = new Map<string, KeyRecord>();
  /** Filter fields and disk locations of every record; the records themselves stay on disk. */
  private index = new RecordIndex();
  /** The newest records' journal lines (recent-lines.ts), so recent pages need no disk reads. */
  private readonly recent = new RecentLines(RECENT_KEPT, RECENT_BYTES);
  private readonly accessJournal: Journal;
  private readonly gatewayJournal: Journal;
  /** The newest MCP gateway calls, oldest first. */
  private readonly gatewayCalls: GatewayToolCall[] = [];
  /** Every gateway call's place in its journal and time, oldest first (scans, exports, retention). */
  private gatewayLocs: { loc: EntryLoc; atMs: number; userId: string }[] = [];
  /** One copy of each user id the gateway entries hold (calls read back at start are parsed anew). */
  private readonly gatewayUserIds = new Map<string, string>();
  /** Tool results reported by later requests, by user and call id (the most recent RESULTS_KEPT). */
  private readonly results = new RecentMap<string, { at: string; isError: boolean; interceptionId: string }>(
    RESULTS_KEPT,
  );
  /** The newest access-log entries (older ones stay on disk). */
  private readonly accessLog: AccessLogEntry[] = [];
  /** Rollups by hour, then by bucket key: rebuilt from the journal at open, then kept current. */
  private readonly buckets = new Map<string, Map<string, UsageBucket>>();
  /**
   * The same buckets by user, oldest hour first: a member's usage reads only their own, not every
   * user's (a member looping on their usage chart walked the whole organisation's rollups, stalling
   * everyone's requests).
   */
  private readonly bucketsOfUser = new Map<string, UsageBucket[]>();
  /** How many buckets of their own models each user has in each hour (`${hour}\0${userId}`). */
  private readonly bucketsPerUserHour = new Map<string, number>();
  /** The newest hour the rollups have (forgetOldUserHours). */
  private newestHour = '';
  /** Each user's newest request time, kept with the rollups. */
  private readonly lastRequests = new Map<string, string>();
  private readonly budgetBook = new MemoryBudgetLedgers(this);
  /** The rollups of records retention pruned (pruned-rollups.ts), and the highest record they hold. */
  private readonly pruned: PrunedRollups;
  private prunedThrough = 0;
  /** Keys' last-use times to key-use.json, every touchFlushMs at most. */
  private readonly keyUseSoon: WriteSoon;
  /** The chain head to live.json, every HEAD_FLUSH_MS at most. */
  private readonly headSoon: WriteSoon;
  private readonly live: AtomicJsonFile<LiveState>;
  private readonly keyUse: AtomicJsonFile<KeyUse>;
  private readonly alertsFile: AtomicJsonFile<AlertsFile>;
  private alerts: Alert[] = [];
  /** This process's own caches of keys and users (the only replica there is). */
  /** Opened to the end: only then does close leave a checkpoint of what is in memory. */
  private openedWhole = false;
  private readonly watchers = new Set<(change: StoreChange) => void>();
  private head: ChainHead = { ...EMPTY_HEAD };

  constructor(private readonly opts: EmbeddedStoreOptions) {
    this.db = new Low(new AtomicJsonFile<DbShape>(path.join(opts.dataDir, 'db.json')), {
      version: DB_VERSION,
      users: [],
      keys: [],
    });
    this.live = new AtomicJsonFile<LiveState>(path.join(opts.dataDir, 'live.json'));
    this.keyUse = new AtomicJsonFile<KeyUse>(path.join(opts.dataDir, 'key-use.json'));
    this.alertsFile = new AtomicJsonFile<AlertsFile>(path.join(opts.dataDir, 'alerts.json'));
    this.pruned = new PrunedRollups(opts.dataDir);
    this.journal = new Journal({
      dir: path.join(opts.dataDir, 'interceptions'),
      ...(opts.segmentBytes ? { segmentBytes: opts.segmentBytes } : {}),
      ...(opts.auditSyncMs ? { syncIntervalMs: opts.auditSyncMs } : {}),
      ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
    });
    const touchFlushMs = opts.touchFlushMs ?? 5_000;
    // Nothing more once another process holds the data dir: its head and last uses are its own.
    this.keyUseSoon = new WriteSoon(touchFlushMs, () =>
      this.lockLost === undefined ? this.writeKeyUse() : Promise.resolve(),
    );
    this.headSoon = new WriteSoon(Math.min(HEAD_FLUSH_MS, touchFlushMs), () =>
      this.lockLost === undefined ? this.live.write({ chainHead: this.head }) : Promise.resolve(),
    );
    this.accessJournal = new Journal({
      dir: path.join(opts.dataDir, 'access'),
      ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
    });
    this.gatewayJournal = new Journal({
      dir: path.join(opts.dataDir, 'gateway-calls'),
      ...(opts.segmentBytes ? { segmentBytes: opts.segmentBytes } : {}),
      ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
    });
  }

  async open(): Promise<void> {
    await fs.mkdir(this.opts.dataDir, { recursive: true, mode: 0o700 });
    this.lock = await DataDirLock.acquire(this.opts.dataDir, undefined, (reason) => this.loseLock(reason));
    const fresh = await this.refuseWithoutDb();
    await this.db.read();
    // A format this version cannot know: the bridge that wrote it may keep what this one would drop.
    const version = (this.db.data as { version?: unknown }).version;
    if (typeof version === 'number' && version > DB_VERSION)
      throw new Error(
        `${path.join(this.opts.dataDir, 'db.json')} is in format ${version}, written by a newer bridge; this one reads format ${DB_VERSION}. Run that version, or a later one.`,
      );
    // Written at once: from the first record on, a data dir without it is one that lost it.
    if (fresh) await this.db.write();
    for (const u of this.db.data.users) this.indexUser(u);
    for (const k of this.db.data.keys) this.indexKey(k);
    const live = (await this.live.read()) ?? {};
    for (const [id, at] of Object.entries((await this.keyUse.read())?.lastUsed ?? {})) {
      const key = this.keysById.get(id);
      if (key && (key.lastUsedAt === null || key.lastUsedAt < at)) key.lastUsedAt = at;
    }
    await this.openAlerts();
    // Before the journal: its records up to what the pruned rollups hold are not rolled up again.
    const pruned = await this.pruned.load(Date.now() - FOLD_AFTER_DAYS * DAY_MS, (line) =>
      this.opts.onWarning?.({
        file: this.pruned.file,
        offset: line,
        reason: `line ${line} is not a whole entry (a prune cut short by a crash): skipped, its records are still in the journal`,
      }),
    );
    this.prunedThrough = pruned.throughSeq;
    if (pruned.compactable)
      await this.pruned.compact(pruned.buckets, pruned.throughSeq).catch((err: unknown) =>
        this.opts.onWarning?.({
          file: this.pruned.file,
          offset: 0,
          reason: `not compacted (${(err as Error).message}); kept as it was`,
        }),
      );
    let head = GENESIS;
    // Where numbering goes on: the journal numbers each record as it chains it (journal.headSeq).
    let nextSeq = 1;
    // What the last close left in memory, if it fits the journal: then only what came after it is
    // replayed. Its rollups hold the pruned records' already.
    const checkpoint = await this.readCheckpoint(pruned.throughSeq);
    if (checkpoint) {
      head = checkpoint.journalHead;
      nextSeq = checkpoint.headSeq + 1;
    } else for (const b of pruned.buckets) this.rollUpBucket(b);
    await this.journal.open((value, loc) => {
      const rec = value as Interception;
      // Records written before costs existed have neither field.
      rec.costUsd ??= null;
      rec.priceKnown ??= rec.costUsd !== null;
      rec.redactions ??= [];
      this.index.add(rec, loc);
      if (rec.seq > this.prunedThrough) this.rollUp(rec);
      else this.noteLastRequest(rec);
      this.noteResults(rec);
      nextSeq = Math.max(nextSeq, rec.seq + 1);
      head = rec.hash ?? GENESIS;
      if (rec.hash !== undefined) this.head = { seq: rec.seq, hash: rec.hash };
    }, checkpoint?.from);
    // The newer of the two: live.json's, or db.json's (a data dir from before live.json, or a
    // db.json written after it by a change to users, keys or documents).
    const kept = newerHead(live.chainHead, this.db.data.chainHead);
    if (kept && kept.seq > this.head.seq) {
      // Records were cut off the end of the journal. The chain goes on from the head, so the cut
      // stays visible as a broken link once newer records follow, and never becomes the new truth.
      this.opts.onWarning?.({
        file: path.join(this.opts.dataDir, 'interceptions'),
        offset: 0,
        reason: `the journal ends at record ${this.head.seq} but the chain head is at ${kept.seq}: records are missing at the tail`,
      });
      head = kept.hash;
      nextSeq = Math.max(nextSeq, kept.seq + 1);
    }
    // The stored head, even one behind the journal (records durable after its last write): until
    // the next append moves it, verification checks the record at its place against it.
    if (kept) this.head = { ...kept };
    this.journal.head = head;
    this.journal.headSeq = nextSeq - 1;
    await this.accessJournal.open((value) => {
      this.accessLog.push(value as AccessLogEntry);
      if (this.accessLog.length > ACCESS_KEPT) this.accessLog.shift();
    });
    await this.gatewayJournal.open((value, loc) => this.keepGatewayCall(value as GatewayToolCall, loc));
    // A prune a crash cut short between keeping its rollups and deleting its records: finished, so
    // nothing reads those records as still kept (a store copy would count them twice).
    const unfinished = this.leadingSegments((i) => this.index.seqAt(i) <= this.prunedThrough);
    if (unfinished.drop > 0) await this.dropLeading(unfinished.drop, unfinished.segments);
    this.openedWhole = true;
  }

  async close(): Promise<void> {
    this.closing = true;
    while (this.committing) await this.commit;
    await this.journal.close();
    // Small and kept for good: written before the checkpoint, which a stop's grace may cut short.
    await this.keyUseSoon.flush();
    await this.headSoon.flush();
    // The index takes each record after its write resolves: let the last ones in first.
    await new Promise((resolve) => setImmediate(resolve));
    await this.keepCheckpoint();
    this.openedWhole = false;
    await this.accessJournal.close();
    await this.gatewayJournal.close();
    await this.lock?.release();
    this.lock = undefined;
  }

  /**
   * The in-memory state the last close left (checkpoint.ts), put in place when it fits the journal
   * as it is: where the journal's replay goes on from, and its head. Undefined: replay it all.
   */
  private async readCheckpoint(
    prunedThrough: number,
  ): Promise<{ from: JournalPlace; journalHead: string; headSeq: number } | undefined> {
    const dir = path.join(this.opts.dataDir, 'interceptions');
    // The index's columns with the room a replay would have left them; the rollups' as they are.
    const room = (length: number, column: number): number =>
      column < INDEX_COLUMNS ? indexCapacity(length) : length;
    const read = await readCheckpoint(this.opts.dataDir, dir, prunedThrough, room).catch(
      (err: unknown): CheckpointRead => ({ ok: false, reason: (err as Error).message }),
    );
    const passOver = (reason: string): undefined => {
      this.opts.onWarning?.({
        file: path.join(this.opts.dataDir, CHECKPOINT_FILE),
        offset: 0,
        reason: `passed over (${reason}): the journal is replayed whole`,
      });
      // Not checked again at the next start: this one's close writes a new one.
      void dropCheckpoint(this.opts.dataDir).catch(() => undefined);
      return undefined;
    };
    if (!read.ok) return read.reason === null ? undefined : passOver(read.reason);
    const state = read.body;
    if (!isCheckpointState(state)) return passOver('its contents are not what this version writes');
    // Everything read and checked before anything of the store's changes: a checkpoint found wrong
    // half-way leaves nothing of it behind.
    const index = new RecordIndex();
    let buckets: UsageBucket[];
    try {
      index.restore(state.index, read.columns.slice(0, INDEX_COLUMNS));
      const [text, numbers] = read.columns.slice(INDEX_COLUMNS);
      if (!(text instanceof Uint32Array) || !(numbers instanceof Float64Array))
        throw new Error("the checkpoint's rollups are not whole");
      buckets = columnsToBuckets({ strings: state.bucketStrings, text, numbers });
      checkEntries(state.results.old, isResult);
      checkEntries(state.results.young, isResult);
      checkEntries(state.bucketsPerUserHour, (v) => typeof v === 'number');
      checkEntries([...state.lastRequests], (v) => typeof v === 'string');
    } catch (err) {
      return passOver((err as Error).message);
    }
    this.index = index;
    // Rollups of hours a start without a checkpoint would find only in the pruned records' rollups
    // (before every kept record's), once older than FOLD_AFTER_DAYS, are summed by the day, as that
    // start sums them: a bridge that always restarted from a checkpoint would otherwise keep every
    // pruned hour apart, in memory, for good. They go first, as there; the rest are taken as they
    // were, the cap on a user-hour's models not applied again (what was kept under it stays).
    const earliest = index.earliestStartMs();
    const foldBefore = Math.min(
      Date.now() - FOLD_AFTER_DAYS * DAY_MS,
      Number.isFinite(earliest)
        ? Date.parse(hourOf(new Date(earliest).toISOString()))
        : Number.POSITIVE_INFINITY,
    );
    const pruned: UsageBucket[] = [];
    const kept: UsageBucket[] = [];
    for (const b of buckets) (Date.parse(b.hour) < foldBefore ? pruned : kept).push(b);
    for (const b of foldedByDay(pruned, foldBefore)) this.rollUpBucket(b);
    for (const b of kept) this.adoptBucket(b);
    this.bucketsPerUserHour.clear();
    for (const [k, n] of state.bucketsPerUserHour) this.bucketsPerUserHour.set(k, n);
    if (state.newestHour > this.newestHour) this.newestHour = state.newestHour;
    for (const [user, at] of state.lastRequests) this.lastRequests.set(user, at);
    this.results.restore(state.results);
    this.head = state.head;
    return { from: read.from, journalHead: state.journalHead, headSeq: state.headSeq };
  }

  /** A checkpoint's bucket into the rollups as it was (summed into one of the same key made meanwhile). */
  private adoptBucket(b: UsageBucket): void {
    let byKey = this.buckets.get(b.hour);
    if (!byKey) {
      byKey = new Map();
      this.buckets.set(b.hour, byKey);
    }
    const key = bucketKey(b);
    const into = byKey.get(key);
    if (into) {
      sumBucket(into, b);
      return;
    }
    byKey.set(key, b);
    const mine = this.bucketsOfUser.get(b.userId);
    if (mine) mine.push(b);
    else this.bucketsOfUser.set(b.userId, [b]);
  }

  /**
   * Writes the checkpoint the next start reads, once the journal is closed, when the index is
   * exactly what the journal holds: its last record ends where its segment does, and no later
   * segment holds anything (a write that failed after its bytes went would leave more).
   */
  private async keepCheckpoint(): Promise<void> {
    if (this.lockLost !== undefined || !this.openedWhole) return;
    const dir = path.join(this.opts.dataDir, 'interceptions');
    try {
      const segments = await segmentSizes(dir);
      const n = this.index.size;
      const last = n > 0 ? this.index.locAt(n - 1) : undefined;
      // The journal must start where the index does (a prune that dropped segments and then failed,
      // or one still under way, leaves them apart), each segment after it in turn.
      const contiguous = segments.every(([seg], i) => i === 0 || seg === segments[i - 1]![0] + 1);
      if (!contiguous || (n > 0 && segments[0]?.[0] !== this.index.segmentAt(0))) {
        await dropCheckpoint(this.opts.dataDir);
        return;
      }
      if (tailMisfit(segments, last ?? null) !== undefined) {
        await dropCheckpoint(this.opts.dataDir);
        return;
      }
      let sum = '';
      if (last !== undefined) {
        const found = await lineSumAt(dir, last);
        if (found === undefined) {
          await dropCheckpoint(this.opts.dataDir);
          return;
        }
        sum = found;
      }
      const index = this.index.state();
      const buckets = bucketsToColumns([...this.buckets.values()].flatMap((byKey) => [...byKey.values()]));
      const state: CheckpointState = {
        index: index.state,
        bucketStrings: buckets.strings,
        bucketsPerUserHour: [...this.bucketsPerUserHour],
        newestHour: this.newestHour,
        lastRequests: this.lastRequests,
        results: this.results.generations(),
        head: this.head,
        journalHead: this.journal.head,
        headSeq: this.journal.headSeq,
      };
      await writeCheckpoint(
        this.opts.dataDir,
        { segments, last: last === undefined ? null : { loc: last, sum }, prunedThrough: this.prunedThrough },
        [...index.columns, buckets.text, buckets.numbers],
        state,
      );
    } catch (err) {
      // The next start replays the journal whole, as without one.
      await dropCheckpoint(this.opts.dataDir).catch(() => undefined);
      this.opts.onWarning?.({
        file: path.join(this.opts.dataDir, CHECKPOINT_FILE),
        offset: 0,
        reason: `not written (${(err as Error).message}): the next start replays the journal whole`,
      });
    }
  }

  /**
   * A data dir that holds records but no db.json lost its users, keys and documents (a file
   * deleted, a restore that missed it): started, it was a fresh install, a new first admin's key
   * written over admin.key and every member's key refused, the records kept under nobody. True:
   * a new data dir (no db.json, no records).
   */
  private async refuseWithoutDb(): Promise<boolean> {
    const dir = this.opts.dataDir;
    if (await exists(path.join(dir, 'db.json'))) return false;
    const segments = await fs.readdir(path.join(dir, 'interceptions')).catch(() => [] as string[]);
    let records = await exists(path.join(dir, 'live.json'));
    for (const name of segments) {
      if (records) break;
      if (SEGMENT_RE.test(name))
        records =
          ((await fs.stat(path.join(dir, 'interceptions', name)).catch(() => undefined))?.size ?? 0) > 0;
    }
    if (!records) return true;
    throw new Error(
      `${path.join(dir, 'db.json')} is missing, but the data dir holds audit records: its users, keys and settings would be lost, ` +
        'and a new first admin made. Restore db.json from a backup (docs/operations.md), or move the data dir aside to start afresh.',
    );
  }

  /**
   * Another process holds the data dir now: this one writes nothing more to it (its journals
   * closed, db.json refused), and says so (`onLockLost`), for the bridge to stop.
   */
  private loseLock(reason: string): void {
    this.lockLost = reason;
    const refusal = lockLostError(reason);
    for (const j of [this.journal, this.accessJournal, this.gatewayJournal]) {
      j.refuse(refusal);
      void j.close().catch(() => undefined);
    }
    this.opts.onLockLost?.(reason);
  }

  /** Refuses a write to the data dir once another process holds it (loseLock). */
  private refuseIfLockLost(): void {
    if (this.lockLost !== undefined) throw lockLostError(this.lockLost);
  }

  async health(): Promise<StoreHealth> {
    try {
      await fs.access(this.opts.dataDir, fs.constants.W_OK);
    } catch (err) {
      return { ok: false, detail: `data dir not writable: ${(err as Error).message}` };
    }
    if (this.lockLost !== undefined) return { ok: false, detail: lockLostError(this.lockLost).message };
    if (!this.journal.isOpen) return { ok: false, detail: 'journal is closed' };
    // Ready means the store takes writes: a full disk refuses every record, and with it (under
    // AIBRIDGE_AUDIT_FAILURE=closed) every request.
    const failing = this.journal.failing;
    return failing ? { ok: false, detail: `audit journal write failing: ${failing.message}` } : { ok: true };
  }

  private indexUser(u: User): void {
    // Everything that can throw before anything changes: no half-indexed user.
    const email = u.email.toLowerCase();
    this.usersById.set(u.id, u);
    this.usersByEmail.set(email, u);
  }

  private indexKey(k: KeyRecord): void {
    this.keysById.set(k.id, k);
    this.keysByHash.set(k.hash, k);
  }

  /** Admin changes applied in memory and not yet in a db.json write that succeeded (change). */
  private readonly unwritten: AppliedChange[] = [];
  private committing = false;
  /** The commit loop under way: a close waits for it, so an admin change answered is on disk. */
  private commit: Promise<void> = Promise.resolve();
  /** Set by close: later admin changes are refused, never written without the lock. */
  private closing = false;

  /**
   * An admin change to db.json: `apply` checks and changes memory at once (a caller's check and
   * its change have nothing between them: two creates of one email, two demotions of the last two
   * admins) and says how to take the change back. Writes are grouped: the changes applied while a
   * write is under way go in the next one (a burst of 200 costs a few writes of the whole file).
   * When a write fails (a full disk, a data dir gone), every change not yet written is taken back,
   * newest first, and each caller hears `store_unavailable` (503): memory stays what the disk has.
   * Kept, a key revoked on a full disk worked again after a restart, and a second revocation found
   * the first one's and was told it was done.
   */
  private change<T>(apply: () => Change<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closing) {
        reject(new BridgeError('store_unavailable', 'The bridge is stopping; nothing was changed.'));
        return;
      }
      let change: Change<T>;
      try {
        change = apply();
      } catch (err) {
        reject(err);
        return;
      }
      this.unwritten.push({ change, resolve: resolve as (v: unknown) => void, reject });
      if (!this.committing) this.commit = this.commitChanges();
    });
  }

  private async commitChanges(): Promise<void> {
    this.committing = true;
    try {
      while (this.unwritten.length > 0) {
        const batch = this.unwritten.length;
        const failure = this.unwritten.some((a) => a.change.undo !== undefined)
          ? await this.writeDb()
          : undefined;
        if (failure) {
          // Those applied while the write was under way too: each was checked against the state
          // of the ones before it.
          const all = this.unwritten.splice(0);
          for (let i = all.length - 1; i >= 0; i--) settle(() => all[i]!.change.undo?.());
          for (const a of all) a.reject(failure);
          continue;
        }
        for (const a of this.unwritten.splice(0, batch)) {
          settle(() => a.change.written?.());
          a.resolve(a.change.result);
        }
      }
    } finally {
      this.committing = false;
    }
  }

  /** Writes db.json; the error a caller hears when it could not be (undefined: written). */
  private async writeDb(): Promise<BridgeError | undefined> {
    if (this.lockLost !== undefined)
      return new BridgeError(
        'store_unavailable',
        'Another process holds this bridge’s data directory now (its lock was lost); nothing was changed. This bridge is stopping.',
      );
    try {
      await this.db.write();
      return undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return new BridgeError(
        'store_unavailable',
        `The bridge could not write its data directory${typeof code === 'string' ? ` (${code})` : ''}; nothing was changed. Retry once it is writable.`,
        { cause: err },
      );
    }
  }

  async countUsers(): Promise<number> {
    return this.usersById.size;
  }

  async createUser(user: User): Promise<void> {
    return this.change(() => {
      // Indexed first: one that cannot be (no email) is refused with nothing changed.
      this.indexUser(user);
      this.db.data.users.push(user);
      return {
        result: undefined,
        undo: () => {
          dropLast(this.db.data.users, user);
          if (this.usersById.get(user.id) === user) this.usersById.delete(user.id);
          if (this.usersByEmail.get(user.email.toLowerCase()) === user)
            this.usersByEmail.delete(user.email.toLowerCase());
        },
      };
    });
  }

  async getUserById(id: string): Promise<User | undefined> {
    return this.usersById.get(id);
  }

  async getUserByEmail(email: string): Promise<User | undefined> {
    return this.usersByEmail.get(email.toLowerCase());
  }

  async listUsers(): Promise<User[]> {
    return [...this.db.data.users];
  }

  async updateUser(id: string, patch: UserPatch): Promise<User | undefined> {
    return this.change(() => {
      const user = this.usersById.get(id);
      if (!user) return { result: undefined };
      // The indexes hold the same object as the document, so updating it in place updates both.
      const before = { ...user };
      Object.assign(user, patch);
      return {
        result: { ...user },
        undo: () => {
          for (const k of Object.keys(patch) as (keyof UserPatch)[])
            if (Object.hasOwn(before, k)) Object.assign(user, { [k]: before[k] });
            else delete user[k];
        },
        written: () => this.announce({ kind: 'user', id }),
      };
    });
  }

  async createKey(key: KeyRecord): Promise<void> {
    return this.change(() => {
      this.db.data.keys.push(key);
      this.indexKey(key);
      return {
        result: undefined,
        undo: () => {
          dropLast(this.db.data.keys, key);
          if (this.keysById.get(key.id) === key) this.keysById.delete(key.id);
          if (this.keysByHash.get(key.hash) === key) this.keysByHash.delete(key.hash);
        },
      };
    });
  }

  async pruneKeys(before: string): Promise<number> {
    this.refuseIfLockLost();
    const cutoff = Date.parse(before);
    return this.change(() => {
      const all = this.db.data.keys;
      const kept: KeyRecord[] = [];
      const gone: KeyRecord[] = [];
      for (const k of all) (keyDeadBefore(k, cutoff) ? gone : kept).push(k);
      if (gone.length === 0) return { result: 0 };
      this.db.data.keys = kept;
      for (const k of gone) {
        if (this.keysById.get(k.id) === k) this.keysById.delete(k.id);
        if (this.keysByHash.get(k.hash) === k) this.keysByHash.delete(k.hash);
      }
      return {
        result: gone.length,
        undo: () => {
          this.db.data.keys = all;
          for (const k of gone) this.indexKey(k);
        },
      };
    });
  }

  async findKeyByHash(hash: string): Promise<KeyRecord | undefined> {
    return this.keysByHash.get(hash);
  }

  async getKey(id: string): Promise<KeyRecord | undefined> {
    return this.keysById.get(id);
  }

  async listKeys(userId: string): Promise<KeyRecord[]> {
    return this.db.data.keys.filter((k) => k.userId === userId);
  }

  async revokeKey(id: string, at: string): Promise<KeyRecord | undefined> {
    return this.change(() => {
      const key = this.keysById.get(id);
      if (!key || key.revokedAt) return { result: key };
      const was = key.revokedAt;
      key.revokedAt = at;
      return {
        result: key,
        undo: () => {
          key.revokedAt = was;
        },
        written: () => this.announce({ kind: 'key', id }),
      };
    });
  }

  async renewKey(id: string, expiresAt: string): Promise<KeyRecord | undefined> {
    return this.change(() => {
      const key = this.keysById.get(id);
      if (
        !key ||
        key.revokedAt ||
        key.expiresAt === null ||
        !(Date.parse(expiresAt) > Date.parse(key.expiresAt))
      )
        return { result: key };
      const was = key.expiresAt;
      key.expiresAt = expiresAt;
      return {
        result: key,
        undo: () => {
          key.expiresAt = was;
        },
        written: () => this.announce({ kind: 'key', id }),
      };
    });
  }

  touchKey(id: string, at: string): void {
    const key = this.keysById.get(id);
    if (!key) return;
    key.lastUsedAt = at;
    this.keyUseSoon.soon();
  }

  private writeKeyUse(): Promise<void> {
    const lastUsed: Record<string, string> = {};
    for (const k of this.keysById.values()) if (k.lastUsedAt !== null) lastUsed[k.id] = k.lastUsedAt;
    return this.keyUse.write({ lastUsed });
  }

  /** alerts.json, or the alerts an older version kept in db.json (moved out once). */
  private async openAlerts(): Promise<void> {
    const file = await this.alertsFile.read();
    const old = this.db.data.alerts;
    this.alerts = file?.alerts ?? [];
    if (old !== undefined) {
      // Both, after a downgrade and an upgrade again: kept together by id, in time order.
      const ids = new Set(this.alerts.map((a) => a.id));
      const merged = [...this.alerts, ...old.filter((a) => !ids.has(a.id))];
      merged.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
      this.alerts = merged.slice(-ALERTS_KEPT);
      await this.alertsFile.write({ alerts: this.alerts });
      delete this.db.data.alerts;
      await this.db.write();
    }
  }

  async chainHead(): Promise<ChainHead> {
    return { ...this.head };
  }

  /** A setting as stored, without claiming it (for `aibridge store copy`). */
  setting(name: StoreSetting): string | undefined {
    return this.db.data.settings?.[name];
  }

  async getSetting(name: StoreSetting): Promise<string | undefined> {
    return this.setting(name);
  }

  private async putSetting(name: StoreSetting, value: string): Promise<void> {
    return this.change(() => {
      this.db.data.settings ??= {};
      const settings = this.db.data.settings;
      const was = settings[name];
      settings[name] = value;
      return {
        result: undefined,
        undo: () => {
          if (was === undefined) delete settings[name];
          else settings[name] = was;
        },
      };
    });
  }

  async claimSetting(name: StoreSetting, value: string): Promise<string> {
    return this.change(() => {
      this.db.data.settings ??= {};
      const settings = this.db.data.settings;
      const stored = settings[name];
      if (stored !== undefined) return { result: stored };
      settings[name] = value;
      return {
        result: value,
        undo: () => {
          delete settings[name];
        },
      };
    });
  }

  private rollUp(rec: Interception): void {
    const hour = hourOf(rec.startedAt);
    this.noteLastRequest(rec);
    // Nearly every record goes to one of its user's newest buckets (same hour, model and client):
    // found there, with no key to build.
    const mine = this.bucketsOfUser.get(rec.userId);
    if (mine !== undefined) {
      for (let i = mine.length - 1; i >= 0 && i >= mine.length - RECENT_BUCKETS; i--) {
        const b = mine[i]!;
        if (
          b.hour === hour &&
          b.provider === rec.provider &&
          b.model === rec.model &&
          b.client === rec.client
        ) {
          addToBucket(b, rec);
          return;
        }
      }
    }
    const byKey = this.hourBuckets(hour);
    // Model names are the client's: one made up per request made a bucket per request, kept in
    // memory for good and rebuilt at every start (a member grew the heap by 85 MB a minute). Past
    // MODELS_PER_USER_HOUR a user's new models of an hour are summed under OTHER_MODELS.
    const userHour = `${hour}\u0000${rec.userId}`;
    const held = this.bucketsPerUserHour.get(userHour) ?? 0;
    const over =
      held >= MODELS_PER_USER_HOUR &&
      !byKey.has(
        bucketKey({ hour, userId: rec.userId, provider: rec.provider, model: rec.model, client: rec.client }),
      );
    const made = addToBuckets(byKey, over ? { ...rec, model: OTHER_MODELS } : rec);
    if (made) this.keepNewBucket(made, userHour, over ? undefined : held);
  }

  /** The rollups' buckets of `hour`, made (and the older hours' model counts forgotten) for its first. */
  private hourBuckets(hour: string): Map<string, UsageBucket> {
    let byKey = this.buckets.get(hour);
    if (!byKey) {
      byKey = new Map();
      this.buckets.set(hour, byKey);
      this.forgetOldUserHours(hour);
    }
    return byKey;
  }

  /**
   * A bucket just made in the rollups, listed with its user's; `held`: the user-hour's own models
   * before it, counted towards MODELS_PER_USER_HOUR (undefined for a bucket under OTHER_MODELS).
   */
  private keepNewBucket(made: UsageBucket, userHour: string, held: number | undefined): void {
    if (held !== undefined) this.bucketsPerUserHour.set(userHour, held + 1);
    const mine = this.bucketsOfUser.get(made.userId);
    if (mine) mine.push(made);
    else this.bucketsOfUser.set(made.userId, [made]);
  }

  /**
   * A bucket of pruned records' rollups (pruned-rollups.ts) into the rollups, as rollUp puts a
   * record: summed into the bucket of its key, or made, past a user-hour's cap on models under
   * OTHER_MODELS.
   */
  private rollUpBucket(src: UsageBucket): void {
    const byKey = this.hourBuckets(src.hour);
    let key = bucketKey(src);
    let into = byKey.get(key);
    const userHour = `${src.hour}\u0000${src.userId}`;
    const held = this.bucketsPerUserHour.get(userHour) ?? 0;
    let model = src.model;
    if (!into && held >= MODELS_PER_USER_HOUR && model !== OTHER_MODELS) {
      model = OTHER_MODELS;
      key = bucketKey({ ...src, model });
      into = byKey.get(key);
    }
    if (into) {
      sumBucket(into, src);
      return;
    }
    const made = { ...copyBucket(src), model };
    byKey.set(key, made);
    this.keepNewBucket(made, userHour, model === OTHER_MODELS ? undefined : held);
  }

  /** The rollups of every record retention pruned, summed by bucket (`aibridge store copy` carries them). */
  async prunedBuckets(): Promise<UsageBucket[]> {
    return (await this.pruned.load(Date.now() - FOLD_AFTER_DAYS * DAY_MS)).buckets;
  }

  /**
   * The counts behind MODELS_PER_USER_HOUR are needed while an hour's records still come: those
   * of hours two days before the newest are forgotten (a record that late starts its count again).
   */
  private forgetOldUserHours(hour: string): void {
    if (hour <= this.newestHour) return;
    this.newestHour = hour;
    const before = new Date(Date.parse(hour) - 2 * 86_400_000).toISOString();
    for (const k of this.bucketsPerUserHour.keys()) if (k < before) this.bucketsPerUserHour.delete(k);
  }

  private noteLastRequest(rec: Interception): void {
    const last = this.lastRequests.get(rec.userId);
    // Two times in toISOString's form compare as their text does, with no parse.
    if (
      last === undefined ||
      (canonicalIso(last) && canonicalIso(rec.startedAt)
        ? rec.startedAt > last
        : Date.parse(rec.startedAt) > Date.parse(last))
    )
      this.lastRequests.set(rec.userId, rec.startedAt);
  }

  async usageBuckets(q: BucketQuery): Promise<UsageBucket[]> {
    const out: UsageBucket[] = [];
    const since = q.since === undefined ? undefined : hourOf(q.since);
    const inRange = (hour: string): boolean =>
      (since === undefined || hour >= since) && (q.until === undefined || hour < q.until);
    const take = (b: UsageBucket): void => {
      if (q.team === undefined || b.team === q.team) out.push({ ...b, usage: { ...b.usage } });
    };
    if (q.userId !== undefined) {
      for (const b of this.bucketsOfUser.get(q.userId) ?? []) if (inRange(b.hour)) take(b);
      return out;
    }
    // An organisation's month is millions of buckets (users × hours × models), a second or more
    // of copying: the loop lets requests through every BUCKETS_PER_TURN, or an admin opening the
    // overview page held every member's requests for that long.
    let seen = 0;
    for (const [hour, byKey] of this.buckets) {
      if (!inRange(hour)) continue;
      for (const b of byKey.values()) {
        take(b);
        if (++seen % BUCKETS_PER_TURN === 0) await nextTurn();
      }
    }
    return out;
  }

  async lastRequestAt(): Promise<Map<string, string>> {
    return new Map(this.lastRequests);
  }

  async listDocs<T>(kind: DocKind): Promise<T[]> {
    return Object.values(this.db.data.docs?.[kind] ?? {}) as T[];
  }

  async getDoc<T>(kind: DocKind, id: string): Promise<T | undefined> {
    const docs = this.db.data.docs?.[kind];
    return docs && Object.hasOwn(docs, id) ? (docs[id] as T) : undefined;
  }

  /** Documents of a kind with the ids they are stored under (for `aibridge store copy`). */
  docEntries(kind: DocKind): [string, unknown][] {
    return Object.entries(this.db.data.docs?.[kind] ?? {});
  }

  async putDoc<T>(kind: DocKind, id: string, doc: T): Promise<void> {
    return this.change(() => {
      // A copy, as PostgreSQL stores one: a document that cannot be written (a cycle) is refused
      // to its caller alone, and one its caller changes later does not change the store's.
      const stored = JSON.parse(JSON.stringify(doc)) as T;
      this.db.data.docs ??= {};
      this.db.data.docs[kind] ??= {};
      const byId = this.db.data.docs[kind];
      const was = Object.getOwnPropertyDescriptor(byId, id);
      // Defined, not assigned: an id is often a name an admin chose (a team, an alias), and
      // assigning `__proto__` would set the object's prototype instead of storing the document.
      Object.defineProperty(byId, id, {
        value: stored,
        enumerable: true,
        writable: true,
        configurable: true,
      });
      return {
        result: undefined,
        undo: () => {
          if (was) Object.defineProperty(byId, id, was);
          else delete byId[id];
        },
        written: () => this.announce({ kind: 'doc', docKind: kind, local: true }),
      };
    });
  }

  async deleteDoc(kind: DocKind, id: string): Promise<boolean> {
    return this.change(() => {
      const byId = this.db.data.docs?.[kind];
      if (!byId || !Object.hasOwn(byId, id)) return { result: false };
      const was = Object.getOwnPropertyDescriptor(byId, id)!;
      delete byId[id];
      return {
        result: true,
        undo: () => {
          Object.defineProperty(byId, id, was);
        },
        written: () => this.announce({ kind: 'doc', docKind: kind, local: true }),
      };
    });
  }

  async appendAlert(alert: Alert): Promise<void> {
    this.refuseIfLockLost();
    const alerts = this.alerts;
    alerts.push(alert);
    if (alerts.length > ALERTS_KEPT) alerts.splice(0, alerts.length - ALERTS_KEPT);
    await this.alertsFile.write({ alerts });
  }

  reserveBudgets(interceptionId: string, claims: BudgetClaim[], amountUsd: number): Promise<ReserveOutcome> {
    return this.budgetBook.reserve(interceptionId, claims, amountUsd);
  }

  settleBudgets(interceptionId: string, charges: BudgetCharge[]): Promise<BudgetSettlement[]> {
    return this.budgetBook.settle(interceptionId, charges);
  }

  leaseBudget(leaseId: string, claim: BudgetClaim, sizing: LeaseSizing): Promise<LeaseOutcome> {
    return this.budgetBook.lease(leaseId, claim, sizing);
  }

  budgetLedgers(claims: BudgetClaim[]): Promise<BudgetLedger[]> {
    return this.budgetBook.current(claims);
  }

  /** One process, no other replicas: only its own key, user and document changes to hear. */
  watch(listener: (change: StoreChange) => void): () => void {
    this.watchers.add(listener);
    return () => this.watchers.delete(listener);
  }

  private announce(change: StoreChange): void {
    for (const l of this.watchers) {
      try {
        l(change);
      } catch {
        // A cache that fails to drop an entry still expires it (AUTH_CACHE_TTL_MS); the write stands.
      }
    }
  }

  /** One process, no other replicas: nobody to tell. */
  broadcast(_change: StoreChange): void {}

  async listAlerts(q: AlertQuery): Promise<Alert[]> {
    const out: Alert[] = [];
    const alerts = this.alerts;
    for (let i = alerts.length - 1; i >= 0 && out.length < q.limit; i--) {
      const a = alerts[i]!;
      if (q.since !== undefined && a.at < q.since) continue;
      if (q.userId !== undefined && a.userId !== q.userId) continue;
      if (q.exceptRules?.includes(a.rule)) continue;
      out.push(a);
    }
    return out;
  }

  async appendInterception(rec: NewInterception): Promise<Interception> {
    let full!: Interception;
    // Seq and chain link are given as the entry is written, in write order. Visible only once
    // durable: a failed write leaves no trace, so the caller may retry it. Entries of one batch
    // resolve in append order, so the index stays sorted by seq.
    const loc = await this.journal.append(
      (prevHash, seq) => {
        // One serialisation: the hashed canonical JSON is the journal line.
        const { record, json, hash } = linkRecord(rec, seq, prevHash);
        full = record;
        return { json, hash };
      },
      // Copied now: the journal reuses those bytes for its next batch.
      (written) => this.recent.keep(full.seq, written),
    );
    this.index.add(full, loc);
    this.noteResults(full);
    this.rollUp(full);
    if (full.seq > this.head.seq) {
      this.head = { seq: full.seq, hash: full.hash! };
      // db.json carries it too whenever something else rewrites it; live.json within a second.
      this.db.data.chainHead = this.head;
      this.headSoon.soon();
    }
    return full;
  }

  private noteResults(rec: Interception): void {
    for (const r of rec.toolResults ?? []) {
      const key = toolResultKey(rec.userId, r.callId);
      this.results.set(key, { at: rec.startedAt, isError: r.isError, interceptionId: rec.id });
    }
  }

  /** The record with each tool call's result, when a later request reported it. */
  private linked(rec: Interception): Interception {
    if (rec.toolCalls.length === 0) return rec;
    return {
      ...rec,
      toolCalls: rec.toolCalls.map((c) => ({
        ...c,
        result: this.results.get(toolResultKey(rec.userId, c.id)) ?? null,
      })),
    };
  }

  private async load(i: number): Promise<Interception> {
    const seq = this.index.seqAt(i);
    return this.parsed(
      seq,
      this.recent.read(seq, lineJson) ?? (await this.journal.read(this.index.locAt(i))),
    );
  }

  /** Each place read alone, undefined for one whose segment is gone (retention). */
  private async readGone(locs: readonly EntryLoc[]): Promise<(string | undefined)[]> {
    const out: (string | undefined)[] = [];
    for (const loc of locs)
      out.push(
        await this.journal.read(loc).catch((err: unknown) => {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          return undefined;
        }),
      );
    return out;
  }

  /** A record as the API gives it, from its journal line (undefined: the line is unreadable). */
  private parsed(seq: number, json: string | undefined): Interception {
    if (json === undefined) throw new UnreadableRecordError(seq);
    const rec = JSON.parse(json) as Interception;
    rec.costUsd ??= null;
    rec.priceKnown ??= rec.costUsd !== null;
    rec.redactions ??= [];
    return this.linked(rec);
  }

  async pruneInterceptions(before: string): Promise<number> {
    this.refuseIfLockLost();
    const cutoff = Date.parse(before);
    const { drop, segments } = this.leadingSegments((i) => this.index.startedAtMs(i) < cutoff);
    if (drop === 0) return 0;
    const lastSeq = this.index.seqAt(drop - 1);
    // Their rollups are kept first (budget periods outlast the retention window): a restart builds
    // the rollups from the journal, which will no longer hold them. A failed write deletes nothing.
    if (lastSeq > this.prunedThrough) {
      const sums = new PrunedSums(MODELS_PER_USER_HOUR);
      for (const seg of segments)
        await this.journal.scanSegment(seg, (value) => {
          const rec = value as Interception;
          if (rec.seq <= this.prunedThrough) return;
          rec.costUsd ??= null;
          rec.priceKnown ??= rec.costUsd !== null;
          sums.add(rec);
        });
      await this.pruned.append(lastSeq, sums.values());
      this.prunedThrough = lastSeq;
    }
    await this.dropLeading(drop, segments);
    return drop;
  }

  /**
   * The closed segments at the journal's start whose every record is `old` (by index position),
   * oldest first, and how many records they hold: retention drops whole segments only.
   */
  private leadingSegments(old: (i: number) => boolean): { drop: number; segments: number[] } {
    const n = this.index.size;
    let drop = 0;
    const segments: number[] = [];
    while (drop < n) {
      const seg = this.index.segmentAt(drop);
      if (seg >= this.journal.currentSegment) break;
      let end = drop;
      let allOld = true;
      while (end < n && this.index.segmentAt(end) === seg) {
        if (!old(end)) allOld = false;
        end++;
      }
      if (!allOld) break;
      segments.push(seg);
      drop = end;
    }
    return { drop, segments };
  }

  /** Deletes the first `drop` records, which fill `segments`, moving where the kept chain starts first. */
  private async dropLeading(drop: number, segments: number[]): Promise<void> {
    // It would no longer fit the journal: read at the next start only to be passed over.
    await dropCheckpoint(this.opts.dataDir).catch(() => undefined);
    // The chain's start moves before the records go: a verify meanwhile skips those about to.
    const anchor = await this.anchorAfter(drop);
    if (anchor) await this.putSetting('chain_anchor', anchorJson(anchor));
    for (const seg of segments) await this.journal.dropSegment(seg);
    const lastSeq = this.index.seqAt(drop - 1);
    this.index.dropFirst(drop);
    this.recent.dropThrough(lastSeq);
  }

  /** Where the chain starts once the first `drop` records are gone; undefined for unchained ones. */
  private async anchorAfter(drop: number): Promise<ChainAnchor | undefined> {
    if (drop < this.index.size) {
      const first = await this.load(drop);
      return first.prevHash === undefined ? undefined : { afterSeq: first.seq - 1, hash: first.prevHash };
    }
    const last = await this.load(drop - 1);
    return last.hash === undefined ? undefined : { afterSeq: last.seq, hash: last.hash };
  }

  async appendAccessLog(entry: AccessLogEntry): Promise<void> {
    await this.accessJournal.append(JSON.stringify(entry));
    this.accessLog.push(entry);
    if (this.accessLog.length > ACCESS_KEPT) this.accessLog.shift();
  }

  async listAccessLog(q: { since?: string | undefined; limit: number }): Promise<AccessLogEntry[]> {
    const out: AccessLogEntry[] = [];
    for (let i = this.accessLog.length - 1; i >= 0 && out.length < q.limit; i--) {
      const e = this.accessLog[i]!;
      if (q.since !== undefined && e.at < q.since) break;
      out.push(e);
    }
    return out;
  }

  private keepGatewayCall(call: GatewayToolCall, loc: EntryLoc): void {
    let userId = this.gatewayUserIds.get(call.userId);
    if (userId === undefined) {
      userId = call.userId;
      this.gatewayUserIds.set(userId, userId);
    }
    this.gatewayLocs.push({ loc, atMs: Date.parse(call.at), userId });
    this.gatewayCalls.push(call);
    // Trimmed a thousand at a time: a shift per call moved 50,000 entries each time.
    if (this.gatewayCalls.length >= GATEWAY_KEPT + 1000)
      this.gatewayCalls.splice(0, this.gatewayCalls.length - GATEWAY_KEPT);
  }

  async appendGatewayCall(call: GatewayToolCall): Promise<void> {
    const loc = await this.gatewayJournal.append(JSON.stringify(call));
    this.keepGatewayCall(call, loc);
  }

  async *scanGatewayCalls(q: {
    since?: string | undefined;
    until?: string | undefined;
    userId?: string | undefined;
  }): AsyncIterable<GatewayToolCall> {
    const since = q.since === undefined ? -Infinity : Date.parse(q.since);
    const until = q.until === undefined ? Infinity : Date.parse(q.until);
    // A copy: appends and prunes while the scan runs change the live list, not this one.
    for (const { loc, atMs, userId } of [...this.gatewayLocs]) {
      // Other users' calls are never read: a member's export costs their own calls.
      if (atMs < since || atMs >= until || (q.userId !== undefined && userId !== q.userId)) continue;
      const line = await this.gatewayJournal.read(loc).catch(() => undefined);
      if (line !== undefined) yield JSON.parse(line) as GatewayToolCall;
    }
  }

  /** Whole closed segments whose calls are all older than `before`, oldest first (as for interceptions). */
  async pruneGatewayCalls(before: string): Promise<number> {
    this.refuseIfLockLost();
    const cutoff = Date.parse(before);
    let drop = 0;
    const n = this.gatewayLocs.length;
    while (drop < n) {
      const seg = this.gatewayLocs[drop]!.loc.segment;
      if (seg >= this.gatewayJournal.currentSegment) break;
      let end = drop;
      let allOld = true;
      while (end < n && this.gatewayLocs[end]!.loc.segment === seg) {
        if (this.gatewayLocs[end]!.atMs >= cutoff) allOld = false;
        end++;
      }
      if (!allOld) break;
      await this.gatewayJournal.dropSegment(seg);
      drop = end;
    }
    if (drop > 0) {
      this.gatewayLocs = this.gatewayLocs.slice(drop);
      // The listing holds the newest calls, the tail of gatewayLocs: drop its copies of what went.
      const notListed = n - this.gatewayCalls.length;
      this.gatewayCalls.splice(0, Math.max(0, drop - notListed));
    }
    return drop;
  }

  async listGatewayCalls(q: GatewayCallQuery): Promise<GatewayToolCall[]> {
    const out: GatewayToolCall[] = [];
    for (let i = this.gatewayCalls.length - 1; i >= 0 && out.length < q.limit; i--) {
      const c = this.gatewayCalls[i]!;
      if (q.since !== undefined && c.at < q.since) break;
      if (q.until !== undefined && c.at >= q.until) continue;
      if (q.userId !== undefined && c.userId !== q.userId) continue;
      if (q.server !== undefined && c.server !== q.server) continue;
      if (q.name !== undefined && c.name !== q.name) continue;
      out.push(c);
    }
    return out;
  }

  async getInterception(id: string): Promise<Interception | undefined> {
    for (const i of this.index.candidatesForId(id)) {
      const rec = await this.load(i);
      if (rec.id === id) return rec;
    }
    return undefined;
  }

  async responseOwner(responseId: string): Promise<string | undefined> {
    for (const i of this.index.candidatesForResponse(responseId)) {
      const rec = await this.load(i);
      if (rec.responseId === responseId) return rec.userId;
    }
    return undefined;
  }

  async responseItemOwners(ids: readonly string[]): Promise<Map<string, string | null>> {
    const owners = new Map<string, string | null>();
    // Several items are one answer's: each record is read once.
    const read = new Map<number, Interception>();
    for (const id of ids) {
      let seen = 0;
      for (const i of this.index.candidatesForItem(id)) {
        // An id in this many records is no unique item id (an upstream that repeats its ids):
        // nobody's, without reading every record that holds it.
        if (++seen > ITEM_RECORDS_LIMIT) {
          owners.set(id, null);
          break;
        }
        let rec = read.get(i);
        if (rec === undefined) {
          rec = await this.load(i);
          read.set(i, rec);
        }
        if (!rec.responseItems?.includes(id)) continue;
        const owner = owners.get(id);
        if (owner === undefined) owners.set(id, rec.userId);
        else if (owner !== rec.userId) {
          owners.set(id, null);
          break;
        }
      }
    }
    return owners;
  }

  async *scanInterceptions(filter: InterceptionFilter): AsyncIterable<Interception> {
    const match = this.index.matcher(filter);
    if (!match) return;
    const q = filter.q === undefined ? undefined : textSearch(filter.q);
    // From disk, every one: a verify must see what is there, not the copy in memory.
    for await (const batch of this.readBatches(this.index.positions(filter), match, false)) {
      for (const { seq, json } of batch) {
        if (json === undefined) throw new UnreadableRecordError(seq);
        const rec = JSON.parse(json) as Interception;
        if (!RecordIndex.exactly(rec, filter)) continue;
        if (q !== undefined && !promptMatches(rec.prompt, q)) continue;
        yield rec;
      }
    }
  }

  /**
   * The journal lines of the positions `match` takes, in their order, a batch at a time (up to
   * READ_BATCH records or READ_BATCH_BYTES): one disk read for each run of them close together
   * (Journal.readMany). Each position's place is taken as it is matched, so a batch reads what
   * the index said then. `fromMemory`: the newest lines from memory (recent-lines.ts) rather
   * than disk.
   */
  private async *readBatches(
    positions: Iterable<number>,
    match: (i: number) => boolean,
    fromMemory = true,
  ): AsyncGenerator<{ seq: number; json: string | undefined }[]> {
    let seqs: number[] = [];
    let locs: EntryLoc[] = [];
    let bytes = 0;
    const flush = async (): Promise<{ seq: number; json: string | undefined }[]> => {
      // The newest lines are in memory (recent-lines.ts): only the others are read.
      const out = seqs.map((seq) => ({
        seq,
        json: fromMemory ? this.recent.read(seq, lineJson) : undefined,
      }));
      const missing = out.flatMap((r, k) => (r.json === undefined ? [k] : []));
      const jsons = await this.journal.readMany(missing.map((k) => locs[k]!)).catch((err: unknown) => {
        // A segment retention deleted since its records were matched: those records are gone.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        return this.readGone(missing.map((k) => locs[k]!));
      });
      missing.forEach((k, m) => {
        out[k]!.json = jsons[m];
      });
      seqs = [];
      locs = [];
      bytes = 0;
      // Unreadable and no longer in the index: pruned meanwhile, not damaged.
      return out.filter((r) => r.json !== undefined || this.index.hasSeq(r.seq));
    };
    for (const i of positions) {
      if (!match(i)) continue;
      const loc = this.index.locAt(i);
      seqs.push(this.index.seqAt(i));
      locs.push(loc);
      bytes += loc.length;
      if (seqs.length >= READ_BATCH || bytes >= READ_BATCH_BYTES) yield await flush();
    }
    if (seqs.length > 0) yield await flush();
  }

  async listInterceptions(
    filter: InterceptionFilter,
    limit: number,
    cursor?: string,
  ): Promise<Page<Interception>> {
    const below = cursor === undefined ? Number.POSITIVE_INFINITY : decodeCursor(cursor);
    const match = this.index.matcher(filter);
    if (!match) return { items: [], nextCursor: null };
    const q = filter.q === undefined ? undefined : textSearch(filter.q);
    if (q !== undefined || (filter.tool !== undefined && this.index.toolsUnindexed)) {
      // Text search reads records from disk: the index has no text; nor has it the tool sets past
      // its cap (record-index.ts), whose records only their reading tells apart.
      const items: Interception[] = [];
      for await (const batch of this.readBatches(this.index.positionsBelow(filter, below), match)) {
        for (const { seq, json } of batch) {
          const rec = this.parsed(seq, json);
          if (!RecordIndex.exactly(rec, filter)) continue;
          if (q !== undefined && !promptMatches(rec.prompt, q)) continue;
          if (items.length === limit) return { items, nextCursor: encodeCursor(items.at(-1)!.seq) };
          items.push(rec);
        }
      }
      return { items, nextCursor: null };
    }
    const positions: number[] = [];
    let more = false;
    for (const i of this.index.positionsBelow(filter, below)) {
      if (!match(i)) continue;
      if (positions.length === limit) {
        more = true;
        break;
      }
      positions.push(i);
    }
    const loaded: Interception[] = [];
    for await (const batch of this.readBatches(positions, () => true))
      for (const { seq, json } of batch) loaded.push(this.parsed(seq, json));
    const items = loaded.filter((rec) => RecordIndex.exactly(rec, filter));
    // The cursor follows what was read, so a page thinned by a (2^-52) hash match goes on after it.
    return { items, nextCursor: more ? encodeCursor(loaded.at(-1)!.seq) : null };
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/** What a checkpoint holds of the embedded store's memory (checkpoint.ts). */
interface CheckpointState {
  index: RecordIndexState;
  /**
   * The strings of the rollups' buckets (bucket-columns.ts); the buckets themselves, hour after hour
   * as they were made, are the two columns after the index's.
   */
  bucketStrings: string[];
  /** MODELS_PER_USER_HOUR's counts, as they were (a late record's hour counts again from 0). */
  bucketsPerUserHour: [string, number][];
  newestHour: string;
  lastRequests: Map<string, string>;
  results: {
    old: [string, { at: string; isError: boolean; interceptionId: string }][];
    young: [string, { at: string; isError: boolean; interceptionId: string }][];
  };
  head: ChainHead;
  journalHead: string;
  headSeq: number;
}

/** The checksum and the format line stand for the rest: this checks that the parts are of their kinds. */
function isCheckpointState(v: unknown): v is CheckpointState {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Record<string, unknown>;
  const index = s.index as Record<string, unknown> | undefined;
  const results = s.results as Record<string, unknown> | undefined;
  const head = s.head as Record<string, unknown> | undefined;
  return (
    typeof index === 'object' &&
    index !== null &&
    typeof index.n === 'number' &&
    Array.isArray(index.strings) &&
    typeof index.items === 'object' &&
    Array.isArray(s.bucketStrings) &&
    Array.isArray(s.bucketsPerUserHour) &&
    typeof s.newestHour === 'string' &&
    s.lastRequests instanceof Map &&
    typeof results === 'object' &&
    results !== null &&
    Array.isArray(results.old) &&
    Array.isArray(results.young) &&
    typeof head === 'object' &&
    head !== null &&
    typeof head.seq === 'number' &&
    typeof head.hash === 'string' &&
    typeof s.journalHead === 'string' &&
    typeof s.headSeq === 'number'
  );
}

/** Throws unless each entry is a [string, value] pair whose value passes `ok`. */
function checkEntries(entries: unknown[], ok: (v: unknown) => boolean): void {
  for (const e of entries)
    if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || !ok(e[1]))
      throw new Error('its entries are not what this version writes');
}

function isResult(v: unknown): boolean {
  const r = v as { at?: unknown; isError?: unknown; interceptionId?: unknown } | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.at === 'string' &&
    typeof r.isError === 'boolean' &&
    typeof r.interceptionId === 'string'
  );
}

/** Takes `item` out of `list`, looked for from the end: an undo takes back the newest first. */
function dropLast<T>(list: T[], item: T): void {
  const i = list.lastIndexOf(item);
  if (i !== -1) list.splice(i, 1);
}

/** What a write to a data dir another process holds now fails with (EmbeddedStore.loseLock). */
function lockLostError(reason: string): Error {
  return new Error(`data dir lock lost: ${reason}`);
}

/** Revoked, or expired, before `cutoff` (ms): no longer usable, and past the retention window. */
function keyDeadBefore(k: KeyRecord, cutoff: number): boolean {
  return (
    (k.revokedAt !== null && Date.parse(k.revokedAt) < cutoff) ||
    (k.expiresAt !== null && Date.parse(k.expiresAt) < cutoff)
  );
}
