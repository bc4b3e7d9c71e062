import type { ApiName, Interception } from '../../../shared/interception';
import type { InterceptionFilter } from '../types';
import type { EntryLoc } from './journal';

const TOOLS = '\u0001tools:';

function toolSet(rec: Interception): string {
  return rec.toolCalls.length === 0
    ? ''
    : TOOLS + [...new Set(rec.toolCalls.map((c) => c.name))].sort().join('\u0000');
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

/** Strings seen many times (user ids, models, clients) stored once, referred to by number. */
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

/**
 * What the embedded store keeps in memory per interception: the fields filters use and where the
 * record is on disk, in columns of typed arrays (about 40 bytes a record), never the record itself.
 */
export class RecordIndex {
  private n = 0;
  private seq = new Float64Array(1024);
  private startedAt = new Float64Array(1024);
  private user = new Uint32Array(1024);
  private provider = new Uint32Array(1024);
  private api = new Uint32Array(1024);
  private model = new Uint32Array(1024);
  private client = new Uint32Array(1024);
  private team = new Uint32Array(1024);
  private session = new Uint32Array(1024);
  private status = new Uint32Array(1024);
  /** The record's tool names joined, interned: a tool filter resolves to the sets that hold it. */
  private tools = new Uint32Array(1024);
  /** 52 bits of the record id, to find a record by id without a map of every id. */
  private idKey = new Float64Array(1024);
  private segment = new Uint32Array(1024);
  private offset = new Float64Array(1024);
  private length = new Uint32Array(1024);
  private readonly strings = new Interned();

  get size(): number {
    return this.n;
  }

  private grow(): void {
    const cap = this.seq.length * 2;
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
    this.segment = g(this.segment);
    this.offset = g(this.offset);
    this.length = g(this.length);
  }

  /** Records must be added in increasing seq order. */
  add(rec: Interception, loc: EntryLoc): void {
    if (this.n === this.seq.length) this.grow();
    const i = this.n++;
    this.seq[i] = rec.seq;
    this.startedAt[i] = Date.parse(rec.startedAt);
    this.user[i] = this.strings.id(rec.userId);
    this.provider[i] = this.strings.id(rec.provider);
    this.api[i] = this.strings.id(rec.api);
    this.model[i] = this.strings.id(rec.model ?? '');
    this.client[i] = this.strings.id(rec.client);
    this.team[i] = this.strings.id(rec.team ?? '');
    this.session[i] = this.strings.id(rec.sessionId ?? '');
    this.status[i] = this.strings.id(rec.status);
    this.tools[i] = this.strings.id(toolSet(rec));
    this.idKey[i] = idKey(rec.id);
    this.segment[i] = loc.segment;
    this.offset[i] = loc.offset;
    this.length[i] = loc.length;
  }

  /** Positions whose id may be `id` (52-bit match; the caller checks the record), newest first. */
  *candidatesForId(id: string): Generator<number> {
    const k = idKey(id);
    for (let i = this.n - 1; i >= 0; i--) if (this.idKey[i] === k) yield i;
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
      this.segment,
      this.offset,
      this.length,
    ]) {
      a.copyWithin(0, count, this.n);
    }
    this.n -= count;
  }

  seqAt(i: number): number {
    return this.seq[i]!;
  }

  locAt(i: number): EntryLoc {
    return { segment: this.segment[i]!, offset: this.offset[i]!, length: this.length[i]! };
  }

  /** Index of the first record with seq ≥ `seq`. */
  lowerBound(seq: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.seq[mid]! < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Ids of the interned tool sets that contain `tool`. */
  private setsWith(tool: string): Set<number> {
    const out = new Set<number>();
    this.strings.values.forEach((v, id) => {
      if (v.startsWith(TOOLS) && v.slice(TOOLS.length).split('\u0000').includes(tool)) out.add(id);
    });
    return out;
  }

  /**
   * A predicate over positions for `filter`, with its strings resolved once; null when no record
   * can match (a value never seen: a member's fresh session id, a model never used), so a caller
   * need not walk every record to find none.
   */
  matcher(f: InterceptionFilter): ((i: number) => boolean) | null {
    const want = (v: string | undefined): number | undefined =>
      v === undefined ? undefined : this.strings.find(v);
    const user = want(f.userId);
    const provider = want(f.provider);
    const api = want(f.api as ApiName | undefined);
    const model = want(f.model);
    const client = want(f.client);
    const team = want(f.team);
    const session = want(f.sessionId);
    const status = want(f.status);
    for (const id of [user, provider, api, model, client, team, session, status]) if (id === -1) return null;
    const toolSets = f.tool === undefined ? undefined : this.setsWith(f.tool);
    if (toolSets?.size === 0) return null;
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
      (toolSets === undefined || toolSets.has(this.tools[i]!)) &&
      (since === undefined || this.startedAt[i]! >= since) &&
      (until === undefined || this.startedAt[i]! < until);
  }
}
