import { setTimeout as sleep } from 'node:timers/promises';
import { ownableId } from '../core/facts';
import type { Principal } from '../core/principal';
import { RecentMap } from '../core/recent-map';
import { BridgeError, isBridgeError } from '../errors';
import type { NewInterception, Store } from '../store/types';

/** Whose a stored response is, as far as the bridge knows. */
export type ResponseStanding = 'own' | 'foreign' | 'unknown';

/**
 * Response ids kept in memory per replica, newest last: ~150 bytes each, so ~7.5 MB full. A
 * member's follow-ups name the response just answered, which is always among them.
 */
export const RECENT_RESPONSE_OWNERS = 50_000;

/**
 * With several replicas, how long a member's unknown response or item id waits for a second look:
 * another replica's notification (sent within 20 ms) or its record acked `sent` (flushed at once
 * unless the database is busy) has arrived by then.
 */
export const RESPONSE_RECHECK_MS = 150;

/**
 * Members' second looks waiting at once, per replica and per user: past them an unknown id is
 * refused at once, so the wait holds no more than this whatever a member sends (or abandons).
 */
const RECHECKS_AT_ONCE = 64;
const RECHECKS_PER_USER = 4;

/** Output item ids kept in memory per replica (a few per stored answer), newest last. */
export const RECENT_ITEM_OWNERS = 150_000;

/** What the memory of items holds for an id that records of several users hold: nobody's. */
const CONTESTED = '';

/**
 * A member's unknown item ids are looked up this many at a time, refused at the first lookup that
 * finds one not theirs: a request of 2,048 made-up ids costs the store one small lookup (two with
 * a second look).
 */
const ITEM_LOOKUP_CHUNK = 64;

/** The item ids a replica tells the others with a response: the rest they look up if named. */
const ITEMS_TOLD = 64;

/**
 * What OpenAI answers for an input item naming a stored item it does not know; one the caller may
 * not use gets the same. `cause` as responseNotFound's.
 */
export function itemNotFound(id: string, standing: ResponseStanding): BridgeError {
  return new BridgeError('item_not_found', `Item with id '${id}' not found.`, { cause: standing });
}

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
 * default on PostgreSQL). So at most one store lookup per check, none when memory answers; with
 * several replicas, a member's id found nowhere is looked for once more after `recheckMs`.
 */
export class ResponseOwners {
  /**
   * Response id → user id, the most recent (RecentMap: a Map dropping its oldest entry one at a
   * time walked more of its deleted slots with every Codex turn once full).
   */
  private readonly recent: RecentMap<string, string>;
  /** Output item id → user id, the most recent, as `recent`. */
  private readonly items: RecentMap<string, string>;

  private readonly recheckMs: number;

  /**
   * `recheckMs` (0: never): how long a member's id that neither memory nor the store knows waits
   * before it is looked for once more, and only then refused, while other replicas are heard from
   * (setPeers). Its owner may still be on its way: another replica tells it within tens of
   * milliseconds (a whole answer's as it ends), and acking `sent` stores its record within the
   * flush window. So a follow-up sent to another replica the moment an answer ends waits instead of
   * being refused.
   */
  constructor(
    private readonly store: Pick<Store, 'responseOwner' | 'responseItemOwners'>,
    opts: { limit?: number; itemLimit?: number; recheckMs?: number } = {},
  ) {
    this.recent = new RecentMap(opts.limit ?? RECENT_RESPONSE_OWNERS);
    this.items = new RecentMap(opts.itemLimit ?? RECENT_ITEM_OWNERS);
    this.recheckMs = opts.recheckMs ?? 0;
  }

  /**
   * Whether other replicas are heard from (the change feed's `peers`): only then may an owner be on
   * its way.
   */
  private peers = false;
  private waitingLooks = 0;
  private readonly looksOf = new Map<string, number>();

  setPeers(present: boolean): void {
    this.peers = present;
  }

  /**
   * Waits `recheckMs` before a member's unknown id is looked for once more; false, at once, when no
   * second look is due (an admin, no other replica heard from, no recheckMs) or too many already wait.
   */
  private async secondLook(principal: Principal): Promise<boolean> {
    if (this.recheckMs <= 0 || !this.peers || principal.user.role === 'admin') return false;
    const user = principal.user.id;
    const mine = this.looksOf.get(user) ?? 0;
    if (this.waitingLooks >= RECHECKS_AT_ONCE || mine >= RECHECKS_PER_USER) return false;
    this.waitingLooks++;
    this.looksOf.set(user, mine + 1);
    try {
      await sleep(this.recheckMs);
    } finally {
      this.waitingLooks--;
      const left = (this.looksOf.get(user) ?? 1) - 1;
      if (left > 0) this.looksOf.set(user, left);
      else this.looksOf.delete(user);
    }
    return true;
  }

  /**
   * Notes a finished record's response, and its stored output items, as its user's (a
   * `Recorder.onFinished` listener).
   */
  note(rec: NewInterception): void {
    if (rec.responseId !== undefined) this.noteItems(rec.responseId, rec.userId, rec.responseItems);
    else for (const item of rec.responseItems ?? []) this.rememberItem(item, rec.userId);
  }

  /**
   * A response as its user's, and its items; told to the other replicas once without items and
   * once with them (the stream's start names the response, its end the items; a record both).
   */
  private noteItems(id: string, userId: string, items: string[] | undefined): void {
    if (items === undefined) {
      this.remember(id, userId);
      return;
    }
    const news = this.recent.get(id) !== userId || items.some((item) => this.items.get(item) !== userId);
    this.remember(id, userId, false);
    for (const item of items) this.rememberItem(item, userId);
    if (!news) return;
    const told = items.slice(0, ITEMS_TOLD);
    // Contested here: said so, or a replica that never heard the first owner would take it for this one's.
    const contested = told.filter((item) => this.items.get(item) === CONTESTED);
    this.tell?.(id, userId, told, contested.length > 0 ? contested : undefined);
  }

  /**
   * Notes a response a stream named as its caller's, and with `items` the stored output items it
   * completed with (a `Recorder.onResponseNamed` listener).
   */
  noteNamed(userId: string, id: string, items?: string[]): void {
    this.noteItems(id, userId, items);
  }

  /**
   * Tells the other replicas of each response this one notes, once (`note` and `noteNamed` both
   * see a streamed one): a follow-up they serve then finds its owner in memory, before the record
   * is stored (AIBRIDGE_AUDIT_ACK=sent) or the stream has ended.
   */
  shareWith(tell: (id: string, userId: string, items?: string[], contested?: string[]) => void): void {
    this.tell = tell;
  }

  private tell: ((id: string, userId: string, items?: string[], contested?: string[]) => void) | undefined;

  /**
   * Another replica's response, and the first of its stored items (`shareWith`): noted as this
   * replica's own notes are, not told on.
   */
  heard(id: unknown, userId: unknown, items?: unknown, contested?: unknown): void {
    if (typeof id !== 'string' || typeof userId !== 'string') return;
    if (!ownableId(id)) return;
    this.remember(id, userId, false);
    for (const item of itemIds(items)) this.rememberItem(item, userId);
    for (const item of itemIds(contested)) this.rememberItem(item, CONTESTED);
  }

  /**
   * An item as the user's; one already another user's becomes nobody's (CONTESTED): item ids are
   * unique, so two owners mean an upstream echoed one user's id into another's answer.
   */
  private rememberItem(id: string, userId: string): void {
    const known = this.items.get(id);
    this.items.set(id, known === undefined || known === userId ? userId : CONTESTED);
  }

  private remember(id: string, userId: string, tell = true): void {
    const known = this.recent.get(id);
    this.recent.set(id, userId);
    if (tell && known !== userId) this.tell?.(id, userId);
  }

  /** Whether `id` is the user's: at once from memory, else from one store lookup. */
  standing(id: string, userId: string): ResponseStanding | Promise<ResponseStanding> {
    const known = this.recent.get(id);
    if (known !== undefined) return known === userId ? 'own' : 'foreign';
    // Longer than any id the recorder keeps: no record can hold it, no lookup needed.
    if (!ownableId(id)) return 'unknown';
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
    if (!(standing instanceof Promise)) return allowed(standing, id, principal, responseNotFound);
    return standing.then(async (s) => {
      if (s === 'unknown' && (await this.secondLook(principal)))
        s = await this.standing(id, principal.user.id);
      allowed(s, id, principal, responseNotFound);
    });
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

  /**
   * Refuses (`item_not_found`, as OpenAI answers an unknown item) a request whose input names by
   * id alone a stored item that is not an output item of the caller's own stored answers: another
   * user's, or, unless the caller is an admin, one the bridge never saw (the rule for a response
   * id). Memory answers most; the rest are looked up in the store, a member's ITEM_LOOKUP_CHUNK at
   * a time.
   */
  checkItems(ids: readonly string[], principal: Principal): void | Promise<void> {
    const unknown: string[] = [];
    for (const id of ids) {
      const owner = this.items.get(id);
      if (owner === undefined) {
        // Longer than any id the recorder keeps: no record can hold it, no lookup needed.
        if (!ownableId(id)) judgeItem(id, undefined, principal);
        else unknown.push(id);
      } else judgeItem(id, owner === CONTESTED ? null : owner, principal);
    }
    if (unknown.length === 0) return;
    // An admin passes unknown ids, so all are asked at once; a member stops at the first refusal.
    const chunk = principal.user.role === 'admin' ? unknown.length : ITEM_LOOKUP_CHUNK;
    return this.lookUpItems(unknown, chunk, principal);
  }

  private async itemOwners(ids: string[]): Promise<Map<string, string | null>> {
    try {
      return await this.store.responseItemOwners(ids);
    } catch (err) {
      throw isBridgeError(err) ? err : new BridgeError('store_unavailable', undefined, { cause: err });
    }
  }

  private async lookUpItems(ids: string[], chunk: number, principal: Principal): Promise<void> {
    for (let at = 0; at < ids.length; at += chunk) {
      const asked = ids.slice(at, at + chunk);
      const owners = await this.itemOwners(asked);
      // Another's is refused before any wait.
      for (const [id, owner] of owners) {
        this.rememberItem(id, owner ?? CONTESTED);
        judgeItem(id, owner, principal);
      }
      const unknown = asked.filter((id) => !owners.has(id));
      if (unknown.length === 0) continue;
      if (!(await this.secondLook(principal))) {
        for (const id of unknown) judgeItem(id, undefined, principal);
        continue;
      }
      const missing = unknown.filter((id) => !this.items.has(id));
      const found = missing.length > 0 ? await this.itemOwners(missing) : undefined;
      for (const id of unknown) {
        const heard = this.items.get(id);
        if (heard !== undefined) judgeItem(id, heard === CONTESTED ? null : heard, principal);
        else {
          const owner = found?.get(id);
          if (owner !== undefined) this.rememberItem(id, owner ?? CONTESTED);
          judgeItem(id, owner, principal);
        }
      }
    }
  }
}

/** The item ids another replica told, as far as they can be ids (ITEMS_TOLD at most). */
function itemIds(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  return (v.slice(0, ITEMS_TOLD) as unknown[]).filter(
    (item): item is string => typeof item === 'string' && ownableId(item),
  );
}

/** Refuses an item whose owner (null: nobody's; undefined: unknown) is not the caller (allowed). */
function judgeItem(id: string, owner: string | null | undefined, principal: Principal): void {
  allowed(
    owner === undefined ? 'unknown' : owner === principal.user.id ? 'own' : 'foreign',
    id,
    principal,
    itemNotFound,
  );
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
