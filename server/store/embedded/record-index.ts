import type { ApiName, Interception } from '../../../shared/interception';
import { isoMs } from '../../core/rollup';
import { toolForm } from '../search-text';
import type { InterceptionFilter } from '../types';
import { countBelow } from './count-below';
import { ItemIndex, type ItemIndexState } from './item-index';
import type { EntryLoc } from './journal';
import { valueKey } from './value-key';

const TOOLS = '\u0001tools:';

/**
 * A tool name as the filter compares it: NUL separates the names of a set, so one inside a name (a
 * member's) would split it into names it is not; dropped, as PostgreSQL's copy drops it (pgText).
 */
function toolKey(name: string): string {
  return name.includes('\u0000') ? name.replaceAll('\u0000', '') : name;
}

/** Distinct tool sets the index interns (RecordIndex.toolSetId); ~330 B each with their names. */
export const MAX_TOOL_SETS = 20_000;
/** A record's tool set past MAX_TOOL_SETS: not in the index, read from the record. */
const UNINDEXED_TOOLS = 0xffff_ffff;

/** Whether the record called a tool of that name (in toolForm, as the filter compares it). */
function calls(rec: Interception, tool: string): boolean {
  return rec.toolCalls.some((c) => toolForm(toolKey(c.name)) === tool);
}

function toolSet(rec: Interception): string {
  return rec.toolCalls.length === 0
    ? ''
    : TOOLS + [...new Set(rec.toolCalls.map((c) => toolKey(c.name)))].sort().join('\u0000');
}

/**
 * The id's last 13 hex digits (52 bits of its uuid, exact in a double), other characters skipped;
 * -1 without any. A loop rather than a regex replace: it runs for every record written.
 */
export function idKey(id: string): number {
  let n = 0;
  let scale = 1;
  let digits = 0;
  for (let i = id.length - 1; i >= 0 && digits < 13; i--) {
    const c = id.charCodeAt(i);
    let v: number;
    if (c >= 48 && c <= 57) v = c - 48;
    else if (c >= 97 && c <= 102) v = c - 87;
    else if (c >= 65 && c <= 70) v = c - 55;
    else continue;
    n += v * scale;
    scale *= 16;
    digits++;
  }
  return digits === 0 ? -1 : n;
}

/** Strings seen many times (user ids, clients, teams) stored once, referred to by number. */
class Interned {
  private readonly ids = new Map<string, number>();
  readonly values: string[] = [];

  id(s: string): number {
    let i = this.ids.get(s);
    if (i === undefined) {
      i = this.values.length;
      this.values.push(s);
      this.ids.set(s, i);
    }
    return i;
  }

  /** The id of a string already seen, or -1: a filter on an unseen value matches nothing. */
  find(s: string): number {
    return this.ids.get(s) ?? -1;
  }
}

/** The index's columns, by name: what `RecordIndex.state` saves and `restore` reads. */
const COLUMNS = [
  'seq',
  'startedAt',
  'user',
  'provider',
  'api',
  'model',
  'client',
  'team',
  'session',
  'status',
  'tools',
  'idKey',
  'response',
  'segment',
  'offset',
  'length',
] as const;

type ColumnName = (typeof COLUMNS)[number];

/** How many columns `state` gives and `restore` takes. */
export const INDEX_COLUMNS = COLUMNS.length;

/** A RecordIndex as a checkpoint keeps it (checkpoint.ts), but for its columns: plain data, no class. */
export interface RecordIndexState {
  n: number;
  strings: string[];
  items: ItemIndexState;
  toolSetCount: number;
  someToolsUnindexed: boolean;
}

/** What a replay of `n` records leaves an index's columns: room for 1024, doubled as needed. */
export function indexCapacity(n: number): number {
  let cap = 1024;
  while (cap < n) cap *= 2;
  return cap;
}

/**
 * What the embedded store keeps in memory per interception: the fields filters use and where the
 * record is on disk, in columns of typed arrays (92 bytes a record), never the record itself.
 */
export class RecordIndex {
  private n = 0;
  private seq = new Float64Array(1024);
  private startedAt = new Float64Array(1024);
  private user = new Uint32Array(1024);
  private provider = new Uint32Array(1024);
  private api = new Uint32Array(1024);
  /** valueKey of the model (member-chosen: not interned). */
  private model = new Float64Array(1024);
  private client = new Uint32Array(1024);
  private team = new Uint32Array(1024);
  /** valueKey of the session id (member-chosen: not interned). */
  private session = new Float64Array(1024);
  private status = new Uint32Array(1024);
  /** The record's tool names joined, interned: a tool filter resolves to the sets that hold it. */
  private tools = new Uint32Array(1024);
  /** 52 bits of the record id, to find a record by id without a map of every id. */
  private idKey = new Float64Array(1024);
  /** valueKey of the record's `responseId` (-1 without one): who owns a stored response, without a map. */
  private response = new Float64Array(1024);
  private segment = new Uint32Array(1024);
  private offset = new Float64Array(1024);
  private length = new Uint32Array(1024);
  private readonly strings = new Interned();
  /** Stored output item ids of the records' answers (`responseItems`), by seq. */
  private readonly items = new ItemIndex();
  /**
   * Each user's seqs, oldest first, by interned user id: a read that names a user (every member's)
   * walks that user's records, not the whole store's (a member looping on an empty page walked
   * every record on the event loop). Seqs rather than positions, which retention shifts.
   */
  private readonly seqsOfUser = new Map<number, number[]>();

  /** Whether a loaded record really has the filter's session and model (a valueKey match may not, once in 2^52). */
  static exactly(rec: Interception, f: InterceptionFilter): boolean {
    return (
      (f.sessionId === undefined || (rec.sessionId ?? '') === f.sessionId) &&
      (f.model === undefined || (rec.model ?? '') === f.model) &&
      (f.tool === undefined || calls(rec, toolForm(toolKey(f.tool))))
    );
  }

  get size(): number {
    return this.n;
  }

  /**
   * The index as plain data, and its columns (COLUMNS' order) cut to the records: views of the
   * index's own arrays, to be read before the next add.
   */
  state(): { state: RecordIndexState; columns: (Float64Array | Uint32Array)[] } {
    return {
      state: {
        n: this.n,
        strings: this.strings.values,
        items: this.items.state(),
        toolSetCount: this.toolSetCount,
        someToolsUnindexed: this.someToolsUnindexed,
      },
      columns: COLUMNS.map((name) => this[name].subarray(0, this.n)),
    };
  }

  /**
   * This (empty) index as `state` was, with `columns` (COLUMNS' order, each of the kind the index
   * keeps, at least `state.n` long) taken as its own. Checks them all before it changes anything.
   */
  restore(state: RecordIndexState, columns: readonly (Float64Array | Uint32Array)[]): void {
    const n = state.n;
    if (this.n !== 0) throw new Error('only an empty index is restored');
    if (!Number.isInteger(n) || n < 0 || columns.length !== COLUMNS.length)
      throw new Error('the checkpoint does not hold the columns this version keeps');
    const cap = columns[0]?.length ?? 0;
    COLUMNS.forEach((name, i) => {
      const from = columns[i]!;
      if (from.length !== cap || cap < n || from.constructor !== this[name].constructor)
        throw new Error(`the checkpoint's column ${name} does not fit the index`);
    });
    const self = this as unknown as Record<ColumnName, Float64Array | Uint32Array>;
    COLUMNS.forEach((name, i) => {
      self[name] = columns[i]!;
    });
    this.n = n;
    for (const v of state.strings) this.strings.id(v);
    this.items.restore(state.items);
    this.toolSetCount = state.toolSetCount;
    this.someToolsUnindexed = state.someToolsUnindexed;
    for (let i = 0; i < n; i++) {
      const user = this.user[i]!;
      const seqs = this.seqsOfUser.get(user);
      if (seqs) seqs.push(this.seq[i]!);
      else this.seqsOfUser.set(user, [this.seq[i]!]);
    }
  }

  private grow(): void {
    const cap = Math.max(1024, this.seq.length * 2);
    const g = <T extends Float64Array | Uint32Array>(a: T): T => {
      const b = new (a.constructor as new (n: number) => T)(cap);
      b.set(a);
      return b;
    };
    this.seq = g(this.seq);
    this.startedAt = g(this.startedAt);
    this.user = g(this.user);
    this.provider = g(this.provider);
    this.api = g(this.api);
    this.model = g(this.model);
    this.client = g(this.client);
    this.team = g(this.team);
    this.session = g(this.session);
    this.status = g(this.status);
    this.tools = g(this.tools);
    this.idKey = g(this.idKey);
    this.response = g(this.response);
    this.segment = g(this.segment);
    this.offset = g(this.offset);
    this.length = g(this.length);
  }

  /** The last model's valueKey: records come model after same model, and the hash walks the name. */
  private lastModel = '';
  private lastModelKey = valueKey('');

  private modelKey(model: string): number {
    if (model !== this.lastModel) {
      this.lastModel = model;
      this.lastModelKey = valueKey(model);
    }
    return this.lastModelKey;
  }

  /** Distinct tool sets interned, and whether a record's set was past MAX_TOOL_SETS. */
  private toolSetCount = 0;
  private someToolsUnindexed = false;

  /** Whether some records' tool sets are not in the index: a `tool` filter must read records. */
  get toolsUnindexed(): boolean {
    return this.someToolsUnindexed;
  }

  /**
   * A record's tool set, interned while there are fewer than MAX_TOOL_SETS: tool names are what the
   * model called, and a member who has it call new ones each turn made a string per record, kept
   * for good. Past that, UNINDEXED_TOOLS: a `tool` filter reads those records to decide.
   */
  private toolSetId(set: string): number {
    const seen = this.strings.find(set);
    if (seen !== -1) return seen;
    if (this.toolSetCount >= MAX_TOOL_SETS) {
      this.someToolsUnindexed = true;
      return UNINDEXED_TOOLS;
    }
    this.toolSetCount += 1;
    return this.strings.id(set);
  }

  /** Records must be added in increasing seq order. */
  add(rec: Interception, loc: EntryLoc): void {
    if (this.n === this.seq.length) this.grow();
    const i = this.n++;
    this.seq[i] = rec.seq;
    this.startedAt[i] = isoMs(rec.startedAt);
    const user = this.strings.id(rec.userId);
    this.user[i] = user;
    const seqs = this.seqsOfUser.get(user);
    if (seqs) seqs.push(rec.seq);
    else this.seqsOfUser.set(user, [rec.seq]);
    this.provider[i] = this.strings.id(rec.provider);
    this.api[i] = this.strings.id(rec.api);
    this.model[i] = this.modelKey(rec.model ?? '');
    this.client[i] = this.strings.id(rec.client);
    this.team[i] = this.strings.id(rec.team ?? '');
    this.session[i] = valueKey(rec.sessionId ?? '');
    this.status[i] = this.strings.id(rec.status);
    this.tools[i] = this.toolSetId(toolSet(rec));
    this.idKey[i] = idKey(rec.id);
    this.response[i] = rec.responseId === undefined ? -1 : valueKey(rec.responseId);
    if (rec.responseItems !== undefined) for (const item of rec.responseItems) this.items.add(item, rec.seq);
    this.segment[i] = loc.segment;
    this.offset[i] = loc.offset;
    this.length[i] = loc.length;
  }

  /** Positions whose id may be `id` (52-bit match; the caller checks the record), newest first. */
  *candidatesForId(id: string): Generator<number> {
    const k = idKey(id);
    if (k === -1) return;
    // The typed array's own search: several times faster than a loop over every record here.
    for (
      let i = this.idKey.lastIndexOf(k, this.n - 1);
      i >= 0;
      i = i === 0 ? -1 : this.idKey.lastIndexOf(k, i - 1)
    )
      yield i;
  }

  /** Positions whose `responseId` may be `id` (52-bit match; the caller checks the record), newest first. */
  *candidatesForResponse(id: string): Generator<number> {
    const k = valueKey(id);
    // From -1 the search would start at the array's end, past the records (stale slots after retention).
    if (this.n === 0) return;
    for (
      let i = this.response.lastIndexOf(k, this.n - 1);
      i >= 0;
      i = i === 0 ? -1 : this.response.lastIndexOf(k, i - 1)
    )
      yield i;
  }

  /** Positions whose `responseItems` may hold `id` (52-bit match; the caller checks the record), newest first. */
  *candidatesForItem(id: string): Generator<number> {
    for (const seq of this.items.seqsFor(id)) {
      const i = this.lowerBound(seq);
      if (this.stillAt(i, seq)) yield i;
    }
  }

  /**
   * Positions of records with seq below `belowSeq` that `f` may match, newest first; only the named
   * user's when `f` names one. The caller still applies the matcher.
   */
  *positionsBelow(f: InterceptionFilter, belowSeq: number): Generator<number> {
    const seqs = this.userSeqs(f);
    if (seqs === undefined) {
      let i = this.lowerBound(belowSeq) - 1;
      while (i >= 0) {
        const seq = this.seq[i]!;
        yield i;
        i = this.stillAt(i, seq) ? i - 1 : this.lowerBound(seq) - 1;
      }
      return;
    }
    for (let k = countBelow(seqs, belowSeq) - 1; k >= 0; k--) {
      const i = this.lowerBound(seqs[k]!);
      // Gone to retention: so is every older one.
      if (!this.stillAt(i, seqs[k]!)) return;
      yield i;
    }
  }

  /** Positions that `f` may match, oldest first; only the named user's when `f` names one. */
  *positions(f: InterceptionFilter): Generator<number> {
    const seqs = this.userSeqs(f);
    if (seqs === undefined) {
      // Up to the newest record there is now; records appended meanwhile are not this walk's.
      if (this.n === 0) return;
      const last = this.seq[this.n - 1]!;
      let i = 0;
      while (i < this.n && this.seq[i]! <= last) {
        const seq = this.seq[i]!;
        yield i;
        i = this.stillAt(i, seq) ? i + 1 : this.lowerBound(seq + 1);
      }
      return;
    }
    for (const seq of seqs) {
      const i = this.lowerBound(seq);
      if (this.stillAt(i, seq)) yield i;
    }
  }

  /**
   * Whether the record at `i` is `seq`. Retention (dropFirst) shifts positions while a caller of a
   * walk waits between them: the walk then finds its place again by seq, neither skipping the
   * records that stay nor giving any twice.
   */
  private stillAt(i: number, seq: number): boolean {
    return i < this.n && this.seq[i] === seq;
  }

  /**
   * A copy of the named user's seqs (a caller may await between positions, and retention trims the
   * list); empty for a user without records, undefined when `f` names none.
   */
  private userSeqs(f: InterceptionFilter): readonly number[] | undefined {
    if (f.userId === undefined) return undefined;
    const user = this.strings.find(f.userId);
    return user === -1 ? [] : (this.seqsOfUser.get(user)?.slice() ?? []);
  }

  /** The earliest start of the records held (they are in seq order, not quite in time order); +∞ with none. */
  earliestStartMs(): number {
    let min = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.n; i++) if (this.startedAt[i]! < min) min = this.startedAt[i]!;
    return min;
  }

  startedAtMs(i: number): number {
    return this.startedAt[i]!;
  }

  segmentAt(i: number): number {
    return this.segment[i]!;
  }

  /** Forgets the oldest `count` records (retention). */
  dropFirst(count: number): void {
    if (count <= 0) return;
    for (const a of [
      this.seq,
      this.startedAt,
      this.user,
      this.provider,
      this.api,
      this.model,
      this.client,
      this.team,
      this.session,
      this.status,
      this.tools,
      this.idKey,
      this.response,
      this.segment,
      this.offset,
      this.length,
    ]) {
      a.copyWithin(0, count, this.n);
    }
    this.n -= count;
    // Users' seq lists lose what retention took.
    const first = this.n > 0 ? this.seq[0]! : Number.POSITIVE_INFINITY;
    this.items.dropBelow(first);
    for (const [user, seqs] of this.seqsOfUser) {
      const gone = countBelow(seqs, first);
      if (gone === seqs.length) this.seqsOfUser.delete(user);
      else if (gone > 0) seqs.splice(0, gone);
    }
  }

  /** Whether the record numbered `seq` is held. */
  hasSeq(seq: number): boolean {
    return this.stillAt(this.lowerBound(seq), seq);
  }

  seqAt(i: number): number {
    return this.seq[i]!;
  }

  locAt(i: number): EntryLoc {
    return { segment: this.segment[i]!, offset: this.offset[i]!, length: this.length[i]! };
  }

  /** Index of the first record with seq ≥ `seq`. */
  lowerBound(seq: number): number {
    return countBelow(this.seq, seq, this.n);
  }

  /**
   * Ids of the interned tool sets that contain `tool`, letter case aside (toolForm). The sets keep
   * the names as sent and are folded here, once per distinct set and query: nothing per record.
   */
  private setsWith(name: string): Set<number> {
    const tool = toolForm(toolKey(name));
    const out = new Set<number>();
    this.strings.values.forEach((v, id) => {
      if (
        v.startsWith(TOOLS) &&
        v
          .slice(TOOLS.length)
          .split('\u0000')
          .some((t) => toolForm(t) === tool)
      )
        out.add(id);
    });
    return out;
  }

  /**
   * A predicate over positions for `filter`, with its strings resolved once; null when no record
   * can match (an interned value never seen: a user, client or team without records), so a caller
   * need not walk every record to find none. Session and model match on their valueKey: a caller
   * checks those two fields on the record it loads (`exactly`).
   */
  matcher(f: InterceptionFilter): ((i: number) => boolean) | null {
    const want = (v: string | undefined): number | undefined =>
      v === undefined ? undefined : this.strings.find(v);
    const user = want(f.userId);
    const provider = want(f.provider);
    const api = want(f.api as ApiName | undefined);
    const model = f.model === undefined ? undefined : valueKey(f.model);
    const client = want(f.client);
    const team = want(f.team);
    const session = f.sessionId === undefined ? undefined : valueKey(f.sessionId);
    const status = want(f.status);
    for (const id of [user, provider, api, client, team, status]) if (id === -1) return null;
    const toolSets = f.tool === undefined ? undefined : this.setsWith(f.tool);
    if (toolSets?.size === 0 && !this.someToolsUnindexed) return null;
    const since = f.since === undefined ? undefined : Date.parse(f.since);
    const until = f.until === undefined ? undefined : Date.parse(f.until);
    return (i) =>
      (user === undefined || this.user[i] === user) &&
      (provider === undefined || this.provider[i] === provider) &&
      (api === undefined || this.api[i] === api) &&
      (model === undefined || this.model[i] === model) &&
      (client === undefined || this.client[i] === client) &&
      (team === undefined || this.team[i] === team) &&
      (session === undefined || this.session[i] === session) &&
      (status === undefined || this.status[i] === status) &&
      (toolSets === undefined || toolSets.has(this.tools[i]!) || this.tools[i] === UNINDEXED_TOOLS) &&
      (since === undefined || this.startedAt[i]! >= since) &&
      (until === undefined || this.startedAt[i]! < until);
  }
}
