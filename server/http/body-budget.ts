import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { BridgeError } from '../errors';

/**
 * Request-body bytes one replica holds at once, over every request (AIBRIDGE_BODY_BYTES_IN_FLIGHT).
 * The body limit bounds one request; without this, 40 connections of one member sending 30 MiB
 * each added 1.2 GB, and the per-address connection cap allows 256 (docs/security.md). A request's
 * bytes count from the first byte read until its answer ends, since the exchange holds the body
 * (and its parsed copy) as long as it runs. Over the budget a request is refused at once with
 * `503 server_busy` and its connection closed; what is already accepted runs on.
 */
export class BodyBudget {
  private held = 0;
  /** Bytes held per user: one member may take at most `perUser`, so they cannot starve the rest. */
  private readonly byUser = new Map<string, number>();
  /** A quarter of the budget: one member's agents in parallel need a few MiB. */
  readonly perUser: number;
  /**
   * What requests without a key (sign-in, device login, OAuth: bodies of a few KiB) hold together,
   * a sixteenth of the budget: each client address counts as one user, and a declared length is
   * taken before a byte arrives, so four addresses of silent sockets held the whole budget and
   * every POST on the replica was refused.
   */
  readonly keyless: number;
  private keylessHeld = 0;
  /**
   * What one client address may hold of `keyless`: a 64th of it, and never less than the largest
   * keyless body (OAuth client registration's 16 KiB) twice. Without it, one address's 256
   * connections of silent 16 KiB registrations held 4 MiB, and four addresses every keyless byte,
   * so no one could sign in meanwhile; now that takes 64 addresses.
   */
  readonly keylessPerAddress: number;

  /** `limit` 0: no budget. */
  constructor(readonly limit: number) {
    this.perUser = Math.ceil(limit / 4);
    this.keyless = Math.ceil(limit / 16);
    this.keylessPerAddress = Math.max(Math.ceil(this.keyless / 64), 32 * 1024);
  }

  /**
   * Starts counting one request's body for `userId`: its declared length (within `bodyLimit`) is
   * refused at once when it cannot fit, and everything it holds is given back when its answer ends
   * (or its client leaves).
   */
  open(req: IncomingMessage, res: ServerResponse, bodyLimit: number, userId: string): BodyAccount | null {
    if (this.limit === 0) return null;
    const account = new BodyAccount(this, userId);
    res.once('close', () => account.release());
    const declared = Number(req.headers['content-length']);
    // A body over the body limit is refused by it (413), not by the budget.
    if (declared > 0 && declared <= bodyLimit) account.add(declared, true);
    return account;
  }

  /** @internal */
  take(userId: string, n: number): 'ok' | 'replica' | 'user' | 'keyless' {
    const mine = this.byUser.get(userId) ?? 0;
    // A user's share bounds what they hold beside their other requests: one body of theirs (up to
    // the body limit) always gets the replica's answer alone.
    if (mine > 0 && mine + n > this.perUser) return 'user';
    const keyless = isKeyless(userId);
    if (keyless && (this.keylessHeld + n > this.keyless || mine + n > this.keylessPerAddress))
      return 'keyless';
    if (this.held + n > this.limit) return 'replica';
    this.held += n;
    if (keyless) this.keylessHeld += n;
    this.byUser.set(userId, mine + n);
    return 'ok';
  }

  /** @internal */
  give(userId: string, n: number): void {
    this.held -= n;
    if (isKeyless(userId)) this.keylessHeld -= n;
    const left = (this.byUser.get(userId) ?? n) - n;
    if (left <= 0) this.byUser.delete(userId);
    else this.byUser.set(userId, left);
  }
}

/** One request's share of the budget. */
export class BodyAccount {
  private taken = 0;
  /** The declared length, taken up front: chunks are counted against it before anything more. */
  private declared = 0;
  private received = 0;
  private released = false;

  constructor(
    private readonly budget: BodyBudget,
    private readonly userId: string,
  ) {}

  /** Counts `n` more bytes; throws `server_busy` when the replica cannot hold them. */
  add(n: number, declared = false): void {
    if (this.released) return;
    if (declared) {
      this.declared = n;
      this.takeOrRefuse(n);
      return;
    }
    this.received += n;
    const beyond = this.received - Math.max(this.declared, this.taken);
    if (beyond > 0) this.takeOrRefuse(beyond);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.taken > 0) this.budget.give(this.userId, this.taken);
    this.taken = 0;
  }

  private takeOrRefuse(n: number): void {
    const taken = this.budget.take(this.userId, n);
    if (taken !== 'ok') throw busy(this.budget, taken);
    this.taken += n;
  }
}

/** The account of a request without a key: its client address (BodyBudget.keyless). */
export function keylessAccount(address: string): string {
  return `address:${address}`;
}

function isKeyless(userId: string): boolean {
  return userId.startsWith('address:');
}

function busy(budget: BodyBudget, whose: 'replica' | 'user' | 'keyless'): BridgeError {
  const mib = (n: number): string => `${Math.round(n / 1048576)} MiB`;
  return new BridgeError(
    'server_busy',
    whose === 'user'
      ? `Your requests in flight hold as much request body as one user may (${mib(budget.perUser)}, a quarter of AIBRIDGE_BODY_BYTES_IN_FLIGHT); retry once one ends.`
      : whose === 'keyless'
        ? `Requests without a key hold as much request body as they may together (${mib(budget.keyless)}, a sixteenth of AIBRIDGE_BODY_BYTES_IN_FLIGHT); retry in a moment.`
        : `The bridge is holding as many request bodies as it allows (${mib(budget.limit)}, AIBRIDGE_BODY_BYTES_IN_FLIGHT); retry in a moment.`,
    { headers: { 'retry-after': '1', connection: 'close' } },
  );
}

/** A body stream that counts what passes against `account` and fails with `server_busy` past it. */
export function countedBody(payload: NodeJS.ReadableStream, account: BodyAccount): Transform {
  const counted = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
      try {
        account.add(chunk.length);
      } catch (err) {
        done(err as Error);
        return;
      }
      done(null, chunk);
    },
  });
  // fastify reads the returned stream and checks its own body limit on what it reads from it.
  payload.on('error', (err) => counted.destroy(err));
  payload.pipe(counted);
  return counted;
}
