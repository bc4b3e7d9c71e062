import { sendInChunks } from '../store/notify-chunks';

/**
 * Gateway calls each user has running, at most `limit` each (AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER;
 * 0: no cap). Each one holds an upstream MCP server's request until it ends: without a cap, one
 * member's concurrent batches of 100 `tools/call` would hold every server's connections for
 * everyone else. Counted on this replica with no store round trip before a call; with several
 * replicas (`share`), each adds what the others said they run, so a member spread over them is
 * held to one cap (docs/mcp.md).
 */
export class CallSlots {
  private readonly held = new Map<string, number>();
  /** Other replicas' running calls by replica, then user: the count and when it was heard (ms). */
  private readonly remote = new Map<string, Map<string, { n: number; at: number }>>();
  /** Users whose count here changed since the others were last told; undefined: not sharing. */
  private changed: Set<string> | undefined;

  constructor(
    readonly limit: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * A slot for one of the user's calls and the function that frees it (again is a no-op, so a
   * `finally` and an abort handler may both call it); undefined when the user holds them all.
   */
  take(userId: string): (() => void) | undefined {
    const n = this.held.get(userId) ?? 0;
    if (this.limit > 0 && n + this.remoteHeld(userId) >= this.limit) return undefined;
    this.held.set(userId, n + 1);
    this.changed?.add(userId);
    let freed = false;
    return () => {
      if (freed) return;
      freed = true;
      const left = (this.held.get(userId) ?? 1) - 1;
      // No entry per user who once called: the map holds only users with calls running.
      if (left <= 0) this.held.delete(userId);
      else this.held.set(userId, left);
      this.changed?.add(userId);
    };
  }

  /** The user's calls running now on this replica (tests check that none leaked). */
  heldBy(userId: string): number {
    return this.held.get(userId) ?? 0;
  }

  /** What the other replicas last said the user runs, leaving out what they stopped repeating. */
  private remoteHeld(userId: string): number {
    if (this.remote.size === 0) return 0;
    const fresh = this.now() - REMOTE_TTL_MS;
    let sum = 0;
    for (const [replica, users] of this.remote) {
      const c = users.get(userId);
      if (c === undefined) continue;
      if (c.at < fresh) {
        users.delete(userId);
        if (users.size === 0) this.remote.delete(replica);
      } else sum += c.n;
    }
    return sum;
  }

  /**
   * Tells the other replicas what runs here: every `everyMs`, each user with calls running (so
   * their copy never goes stale while the calls run) and each whose calls all ended since the last
   * time (so it clears at once). Returns a stop.
   */
  share(send: (counts: [userId: string, running: number][]) => void, everyMs = CALL_SHARE_MS): () => void {
    this.changed = new Set();
    const tick = (): void => {
      const changed = this.changed ?? new Set<string>();
      this.changed = new Set();
      const out: [string, number][] = [...this.held];
      for (const u of changed) if (!this.held.has(u)) out.push([u, 0]);
      sendInChunks(out, send);
      // What the others stopped repeating goes, so the map holds only calls running somewhere.
      const fresh = this.now() - REMOTE_TTL_MS;
      for (const [replica, users] of this.remote) {
        for (const [u, c] of users) if (c.at < fresh) users.delete(u);
        if (users.size === 0) this.remote.delete(replica);
      }
    };
    const timer = setInterval(tick, everyMs);
    timer.unref();
    return () => {
      clearInterval(timer);
      this.changed = undefined;
    };
  }

  /** What another replica (`share`) runs for some users; anything malformed is skipped. */
  heard(replica: unknown, counts: unknown): void {
    if (typeof replica !== 'string' || !Array.isArray(counts)) return;
    const at = this.now();
    let users = this.remote.get(replica);
    for (const c of counts as unknown[]) {
      if (!Array.isArray(c) || typeof c[0] !== 'string' || typeof c[1] !== 'number') continue;
      const [userId, n] = c as [string, number];
      if (!(n > 0) || !Number.isFinite(n)) {
        users?.delete(userId);
        continue;
      }
      if (!users) {
        users = new Map();
        this.remote.set(replica, users);
      }
      users.set(userId, { n, at });
    }
    if (users?.size === 0) this.remote.delete(replica);
  }
}

/** How often a replica repeats what runs on it (`share`). */
export const CALL_SHARE_MS = 250;
/** A count another replica has not repeated for this long is no longer counted (it stopped, or died). */
const REMOTE_TTL_MS = 4 * CALL_SHARE_MS;
