import type { FastifyReply, FastifyRequest } from 'fastify';
import { UserPlaces } from '../core/user-places';
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
  private readonly places = new UserPlaces(SCANS_PER_USER);

  /**
   * A route handler that runs in one of the user's SCANS_PER_USER places, or is refused with `429
   * rate_limited` when they hold them all (`when`: whether this request scans at all). The place
   * is held until the handler's reading has settled and its response has closed: a client that
   * hangs up does not get its place back while the store still reads for it (searches cut off
   * after 300 ms, their places given back at once, ran on in the database by the dozen).
   */
  guard<Req extends FastifyRequest, R>(
    handler: (req: Req, reply: FastifyReply) => Promise<R>,
    when: (req: Req) => boolean = () => true,
  ): (req: Req, reply: FastifyReply) => Promise<R> {
    return async (req, reply) => {
      if (!when(req)) return handler(req, reply);
      const release = this.take(principalOf(req).user.id);
      let waiting = 2;
      const done = (): void => {
        if (--waiting === 0) release();
      };
      if (reply.raw.closed) done();
      else reply.raw.once('close', done);
      try {
        return await handler(req, reply);
      } finally {
        done();
      }
    };
  }

  /** One of the user's places, given back by the function returned. */
  private take(user: string): () => void {
    const release = this.places.take(user);
    if (release) return release;
    throw new BridgeError(
      'rate_limited',
      `At most ${SCANS_PER_USER} searches, session or tool-call lists, exports and cache-break reports at a time per user; wait for one to finish.`,
      { headers: { 'retry-after': '1' } },
    );
  }
}
