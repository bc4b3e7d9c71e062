import type { FastifyReply, FastifyRequest } from 'fastify';
import type { User } from '../../shared/identity';
import { BridgeError } from '../errors';
import { AuthThrottle } from './auth-throttle';

/** Changes one member (not an admin) may make through `/api` per minute (docs/api.md#member-writes). */
export const MEMBER_WRITES_PER_MINUTE = 60;

/**
 * Not paced: reads, and `DELETE`, which only ends what a member holds (a key, a token, a session)
 * and writes nothing when there is nothing to end, so it cannot be looped; and a member whose key
 * leaked must be able to revoke it while the thief keeps their pace full.
 */
const UNPACED = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);

/**
 * Paces what members change through the API: a session sign-in, an MCP token, a key
 * renewed, a device or MCP client approved. Each is a document or key written, which the embedded
 * store serialises whole into db.json on the event loop (tens of milliseconds with thousands of
 * users), so a member's loop would hold up every request of the bridge. People never come near
 * the pace; admins, whose scripts create users and keys in bulk, are not paced.
 */
export class MemberWrites {
  private readonly window: AuthThrottle;

  constructor(now: () => number, perMinute = MEMBER_WRITES_PER_MINUTE) {
    this.window = new AuthThrottle(perMinute, now, (userId) => userId);
  }

  /** Counts one change by `user`, or refuses it with `429 rate_limited` (nothing changed) past the pace. */
  take(user: Pick<User, 'id' | 'role'>): void {
    if (user.role === 'admin') return;
    this.window.take(
      user.id,
      (seconds) =>
        new BridgeError(
          'rate_limited',
          `More than ${MEMBER_WRITES_PER_MINUTE} changes a minute from one user; retry in ${seconds} s.`,
          { headers: { 'retry-after': String(seconds) } },
        ),
    );
  }

  /** For `/api`'s scope, after the access hook: a route that changes something, called by a member. */
  hook() {
    return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
      if (UNPACED.has(req.method) || !req.principal) return;
      this.take(req.principal.user);
    };
  }
}
