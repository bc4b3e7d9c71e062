import type { FastifyReply, FastifyRequest } from 'fastify';
import { BridgeError } from '../errors';
import { principalOf } from '../http/access';

/**
 * Reads that walk every record in their range, not a page (a text search, sessions, tool calls, an
 * export, the cache-break report), one user may run at a time on a replica: each reads and parses
 * records from disk, and eight text searches at once over one member's 20,000 records took the
 * other members' p99 from 83 ms to 3.6 s. Two at once stayed within the noise.
 */
export const SCANS_PER_USER = 2;

/** Each user's places for whole-range reads, shared by every route that makes one. */
export class ScanPlaces {
  private readonly scanning = new Map<string, number>();

  /**
   * A preHandler: holds one of the user's SCANS_PER_USER places until the answer ends or the
   * client leaves, or refuses with `429 rate_limited` when they hold them all.
   */
  readonly hold = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const user = principalOf(req).user.id;
    const n = this.scanning.get(user) ?? 0;
    if (n >= SCANS_PER_USER)
      throw new BridgeError(
        'rate_limited',
        `At most ${SCANS_PER_USER} searches, session or tool-call lists, exports and cache-break reports at a time per user; wait for one to finish.`,
        { headers: { 'retry-after': '1' } },
      );
    this.scanning.set(user, n + 1);
    reply.raw.once('close', () => {
      const left = (this.scanning.get(user) ?? 1) - 1;
      if (left <= 0) this.scanning.delete(user);
      else this.scanning.set(user, left);
    });
  };
}
