/**
 * Places each user holds at once, at most `limit` each (0: no cap), counted only for users who hold
 * some. What a place stands for is its owner's: a whole-range read (server/audit/scan-places.ts), a
 * request to a provider in flight, metered or passed through (AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER).
 */
export class UserPlaces {
  private readonly held = new Map<string, number>();

  constructor(readonly limit: number) {}

  /**
   * A place for the user and the function that gives it back (again is a no-op, so a `finally` and
   * a close handler may both call it); undefined when the user holds them all.
   */
  take(userId: string): (() => void) | undefined {
    const n = this.held.get(userId) ?? 0;
    if (this.limit > 0 && n >= this.limit) return undefined;
    this.held.set(userId, n + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = (this.held.get(userId) ?? 1) - 1;
      if (left <= 0) this.held.delete(userId);
      else this.held.set(userId, left);
    };
  }

  /** The places the user holds now. */
  heldBy(userId: string): number {
    return this.held.get(userId) ?? 0;
  }
}
