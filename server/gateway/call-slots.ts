/**
 * Gateway calls each user has running on this replica, at most `limit` each
 * (AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER; 0: no cap). Each one holds an upstream MCP server's
 * request until it ends: without a cap, one member's concurrent batches of 100 `tools/call` would
 * hold every server's connections for everyone else. Per replica, like the notification streams:
 * counting across replicas would put a store round trip before every call.
 */
export class CallSlots {
  private readonly held = new Map<string, number>();

  constructor(readonly limit: number) {}

  /**
   * A slot for one of the user's calls and the function that frees it (again is a no-op, so a
   * `finally` and an abort handler may both call it); undefined when the user holds them all.
   */
  take(userId: string): (() => void) | undefined {
    const n = this.held.get(userId) ?? 0;
    if (this.limit > 0 && n >= this.limit) return undefined;
    this.held.set(userId, n + 1);
    let freed = false;
    return () => {
      if (freed) return;
      freed = true;
      const left = (this.held.get(userId) ?? 1) - 1;
      // No entry per user who once called: the map holds only users with calls running.
      if (left <= 0) this.held.delete(userId);
      else this.held.set(userId, left);
    };
  }

  /** The user's calls running now (tests check that none leaked). */
  heldBy(userId: string): number {
    return this.held.get(userId) ?? 0;
  }
}
