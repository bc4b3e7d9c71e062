import { BridgeError } from '../errors';

/**
 * Model requests each user has running on this replica (AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER). Each
 * holds an upstream call, with the organisation's key, for as long as the provider takes: one key
 * held 756 of them open at once, which uses the key's concurrency and rate limits up for everyone
 * else. A request takes its place at admission and gives it back when its exchange ends, however
 * it ends (Exchange.release).
 */
export class RequestsInFlight {
  private readonly running = new Map<string, number>();

  /** `perUser` 0: no cap. */
  constructor(readonly perUser: number) {}

  /** One of the user's places, given back by the function returned; throws `rate_limited` past the cap. */
  take(userId: string): () => void {
    if (this.perUser === 0) return () => undefined;
    const n = this.running.get(userId) ?? 0;
    if (n >= this.perUser)
      throw new BridgeError(
        'rate_limited',
        `You have ${this.perUser} model requests running on this bridge, as many as one user may at once (AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER); retry when one has finished.`,
        { headers: { 'retry-after': '1' } },
      );
    this.running.set(userId, n + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = (this.running.get(userId) ?? 1) - 1;
      if (left <= 0) this.running.delete(userId);
      else this.running.set(userId, left);
    };
  }

  /** Requests the user has running. */
  of(userId: string): number {
    return this.running.get(userId) ?? 0;
  }
}
