import type { Principal } from '../core/principal';
import { BridgeError, isBridgeError } from '../errors';
import type { NewInterception, Store } from '../store/types';
import { MAX_RESPONSE_ID_CHARS } from './recorder';

/** Whose a stored response is, as far as the bridge knows. */
export type ResponseStanding = 'own' | 'foreign' | 'unknown';

/**
 * Response ids kept in memory per replica, newest last: ~150 bytes each, so ~7.5 MB full. A
 * member's follow-ups name the response just answered, which is always among them.
 */
export const RECENT_RESPONSE_OWNERS = 50_000;

/**
 * What OpenAI answers for an id it does not know; an id the caller may not use gets the same.
 * `cause` says why, for the bridge's log only: `foreign` or `unknown`.
 */
export function responseNotFound(id: string, standing: ResponseStanding): BridgeError {
  return new BridgeError('response_not_found', `Response with id '${id}' not found.`, { cause: standing });
}

/**
 * What OpenAI answers for a conversation id it does not know (Conversations API `conv_…`); one
 * the caller may not use gets the same. `cause` as responseNotFound's.
 */
export function conversationNotFound(id: string, standing: ResponseStanding): BridgeError {
  return new BridgeError('conversation_not_found', `Conversation with id '${id}' not found.`, {
    cause: standing,
  });
}

/**
 * Who owns each stored provider response (OpenAI Responses' `resp_…`): its record's user
 * (`responseId` on the interception record). Every organisation member's requests go upstream with
 * the one organisation key, under which the provider would hand any stored response to whoever
 * names its id; the bridge lets a member read, delete, cancel or continue only their own.
 *
 * A record's response is noted here as the interception finishes, before the client's answer ends
 * (`Recorder.onFinished` runs first): this replica knows it by the time a follow-up can come. Other
 * replicas find it in the store, where it is by then too with AIBRIDGE_AUDIT_ACK=stored (the
 * default on PostgreSQL). So at most one store lookup per check, none when memory answers.
 */
export class ResponseOwners {
  /** Response id → user id, oldest first (a Map keeps insertion order: the first key is evicted). */
  private readonly recent = new Map<string, string>();

  constructor(
    private readonly store: Pick<Store, 'responseOwner'>,
    private readonly limit = RECENT_RESPONSE_OWNERS,
  ) {}

  /** Notes a finished record's response as its user's (a `Recorder.onFinished` listener). */
  note(rec: NewInterception): void {
    if (rec.responseId !== undefined) this.remember(rec.responseId, rec.userId);
  }

  /** Notes a response a stream named as its caller's (a `Recorder.onResponseNamed` listener). */
  noteNamed(userId: string, id: string): void {
    this.remember(id, userId);
  }

  /**
   * Tells the other replicas of each response this one notes, once (`note` and `noteNamed` both
   * see a streamed one): a follow-up they serve then finds its owner in memory, before the record
   * is stored (AIBRIDGE_AUDIT_ACK=sent) or the stream has ended.
   */
  shareWith(tell: (id: string, userId: string) => void): void {
    this.tell = tell;
  }

  private tell: ((id: string, userId: string) => void) | undefined;

  /** Another replica's response (`shareWith`): noted as this replica's own notes are, not told on. */
  heard(id: unknown, userId: unknown): void {
    if (typeof id !== 'string' || typeof userId !== 'string') return;
    if (id.length === 0 || id.length > MAX_RESPONSE_ID_CHARS) return;
    this.remember(id, userId, false);
  }

  private remember(id: string, userId: string, tell = true): void {
    const known = this.recent.get(id);
    this.recent.delete(id);
    this.recent.set(id, userId);
    if (this.recent.size > this.limit) this.recent.delete(this.recent.keys().next().value!);
    if (tell && known !== userId) this.tell?.(id, userId);
  }

  /** Whether `id` is the user's: at once from memory, else from one store lookup. */
  standing(id: string, userId: string): ResponseStanding | Promise<ResponseStanding> {
    const known = this.recent.get(id);
    if (known !== undefined) return known === userId ? 'own' : 'foreign';
    // Longer than any id the recorder keeps: no record can hold it, no lookup needed.
    if (id.length === 0 || id.length > MAX_RESPONSE_ID_CHARS) return 'unknown';
    return this.store.responseOwner(id).then(
      (owner) => {
        if (owner === undefined) return 'unknown';
        // Every replica can look it up as this one did: nothing to tell.
        this.remember(id, owner, false);
        return owner === userId ? 'own' : 'foreign';
      },
      (err: unknown) => {
        throw isBridgeError(err) ? err : new BridgeError('store_unavailable', undefined, { cause: err });
      },
    );
  }

  /**
   * Refuses (`response_not_found`, as OpenAI answers an unknown id) a response another user
   * created, and one the bridge never saw created unless the caller is an admin: such an id was
   * made outside the bridge (or before it recorded owners), and letting members through would leave
   * every id made elsewhere under the organisation's key open to them.
   */
  check(id: string, principal: Principal): void | Promise<void> {
    const standing = this.standing(id, principal.user.id);
    if (standing instanceof Promise) return standing.then((s) => allowed(s, id, principal, responseNotFound));
    allowed(standing, id, principal, responseNotFound);
  }

  /**
   * Refuses (`conversation_not_found`, as OpenAI answers an unknown id) a stored conversation
   * (Conversations API `conv_…`, which a Responses request reads and appends to) unless the caller
   * is an admin. No bridge route creates one, so every id is one the bridge never saw created, made
   * under the organisation's key by anyone: the rule for such a response id, for the same reason.
   */
  checkConversation(id: string, principal: Principal): void {
    allowed('unknown', id, principal, conversationNotFound);
  }
}

function allowed(
  standing: ResponseStanding,
  id: string,
  principal: Principal,
  notFound: (id: string, standing: ResponseStanding) => BridgeError,
): void {
  if (standing === 'own') return;
  if (standing === 'unknown' && principal.user.role === 'admin') return;
  throw notFound(id, standing);
}
