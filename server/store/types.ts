import type { User } from '../../shared/identity';
import type {
  ApiName,
  GatewayToolCall,
  Interception,
  InterceptionStatus,
  Page,
} from '../../shared/interception';
import type { BridgeEvent } from '../../shared/protocol';
import type { Alert } from '../../shared/spend';
import type { Audience } from '../core/audience';
import type { ChainHead } from '../core/chain';
import type { KeyRecord } from '../core/principal';
import type { BucketQuery, UsageBucket } from '../core/rollup';

export interface InterceptionFilter {
  userId?: string | undefined;
  provider?: string | undefined;
  api?: ApiName | undefined;
  model?: string | undefined;
  client?: string | undefined;
  /** Inclusive lower bound on startedAt (ISO 8601). */
  since?: string | undefined;
  /** Exclusive upper bound on startedAt (ISO 8601). */
  until?: string | undefined;
  team?: string | undefined;
  sessionId?: string | undefined;
  /** Records in which the model called a tool of this name. */
  tool?: string | undefined;
  status?: InterceptionStatus | undefined;
  /** Case-insensitive text in the prompt. */
  q?: string | undefined;
}

export interface AccessLogEntry {
  id: string;
  at: string;
  adminId: string;
  adminEmail: string;
  /** The route read, e.g. `GET /api/v1/interceptions`. */
  route: string;
  /** Whose records: a user id, or null for everyone's. */
  subjectUserId: string | null;
  query: Record<string, string>;
}

/** Which MCP gateway calls to list (newest first). */
export interface GatewayCallQuery {
  userId?: string | undefined;
  server?: string | undefined;
  /** The called name (`<server>__<tool>`). */
  name?: string | undefined;
  /** Inclusive lower bound on `at`. */
  since?: string | undefined;
  /** Exclusive upper bound on `at`. */
  until?: string | undefined;
  limit: number;
}

export interface StoreHealth {
  ok: boolean;
  detail?: string;
  /** Schema migrations applied, for stores that have them. */
  migrations?: { applied: number; latest: number };
}

/** Admin-set documents the bridge keeps by kind and id: budgets, rate limits, model policies, prices. */
export type DocKind =
  | 'budget'
  | 'rate_limit'
  | 'model_policy'
  | 'price'
  | 'team_capture'
  | 'mcp_server'
  | 'mcp_credential'
  /** Admin page sign-ins, by the SHA-256 of their cookie token (server/admin/sessions.ts). */
  | 'admin_session'
  /** Device sign-ins in progress, by the SHA-256 of their device code (server/device/device-flow.ts). */
  | 'device_grant'
  /** Provisioner credentials, by id; the secret only as its keyed hash (server/identity/provisioners.ts). */
  | 'provisioner'
  /**
   * When a provisioner was last used, by its id: kept apart so that noting a use never writes the
   * provisioner itself (a use served as it was deleted would bring it back).
   */
  | 'provisioner_use'
  /** SSO sign-ins under way (PKCE verifier, nonce), by the SHA-256 of their state (server/sso/oidc-flows.ts). */
  | 'oidc_flow'
  /** SCIM's view of a user (externalId, deleted), by bridge user id (server/scim). */
  | 'scim_user'
  /** SCIM groups, whose members drive team and role (server/scim). */
  | 'scim_group'
  /** Users deactivated by the identity provider: a write makes every replica close their live sockets. */
  | 'user_deactivation'
  /** The tool-call policy: one document holding the whole rule set (server/policy). */
  | 'tool_policy'
  /** Whether a team may send its members' own provider credentials upstream, by team (server/routing/byok.ts). */
  | 'team_byok'
  /** Provider keys added or changed at run time, by `<instance>/<name>`; the secret sealed (server/routing). */
  | 'provider_key'
  /** Model aliases an admin set, by `alias` or `team/alias` (server/routing/aliases.ts). */
  | 'model_alias'
  /** MCP gateway OAuth (server/oauth/grants.ts): clients registered with RFC 7591, by client id. */
  | 'oauth_client'
  /** Authorization requests waiting for the user's answer, by the SHA-256 of their handle. */
  | 'oauth_pending'
  /** Per-user MCP server OAuth under way (server/mcp/oauth.ts), by the SHA-256 of its `state`. */
  | 'mcp_oauth_pending'
  /** Which `mcp_oauth_pending` is a user's current one at a server, by `<server>:<user id>`. */
  | 'mcp_oauth_latest'
  /** Authorization codes, by their keyed hash (kept until expiry to catch a replay). */
  | 'oauth_code'
  /** A user's approval of a client: its key, the live refresh token's keyed hash; by grant id. */
  | 'oauth_grant'
  /** Access tokens for `/mcp`, by their keyed hash. */
  | 'oauth_access_token'
  /** The routing table set through the admin API: one document, the whole table (server/routing). */
  | 'route_table';

export interface AlertQuery {
  since?: string | undefined;
  userId?: string | undefined;
  /** Rules left out before the limit counts (what a member may not read, memberMayRead). */
  exceptRules?: readonly string[] | undefined;
  limit: number;
}

/** One budget in one of its periods: the unit the store keeps a spend ledger for. */
export interface BudgetPeriod {
  budgetId: string;
  /** Start of the period (ISO 8601, UTC). */
  periodStart: string;
}

/** A budget that applies to a request, as the caller knows it. */
export interface BudgetClaim extends BudgetPeriod {
  limitUsd: number;
  /** Whether reaching the limit refuses requests (else it only alerts). */
  block: boolean;
  thresholds: number[];
  /**
   * End of the period (exclusive): spend and alerts stamped after it are another period's. Without
   * it (older callers, session caps), everything from the start counts. A wall clock once set ahead
   * stamped records in a later period, and every period after counted them again.
   */
  periodEnd?: string;
  /**
   * Whose spend counts, as a rollup filter: a period's ledger starts from what the rollups already
   * hold for it, and from the alerts already raised for it. With `sessionId` (a session cap, whose
   * ledger has no period) it starts from what that user's session's records cost.
   */
  scope: { userId?: string | undefined; team?: string | undefined; sessionId?: string | undefined };
}

/** Whether the claim is a session cap's ledger: it starts from the session's recorded cost, not the rollups. */
export function isSessionClaim(
  claim: BudgetClaim,
): claim is BudgetClaim & { scope: { sessionId: string; userId: string } } {
  return claim.scope.sessionId !== undefined && claim.scope.userId !== undefined;
}

/** Where a budget stands in a period, the same for every replica. */
export interface BudgetLedger extends BudgetPeriod {
  spentUsd: number;
  /** Estimated cost of requests admitted and not yet settled. */
  reservedUsd: number;
  /** The highest threshold already alerted in this period (0: none). */
  alerted: number;
}

export type ReserveOutcome =
  | { ok: true; ledgers: BudgetLedger[] }
  /** `refusedBy`: the blocking budget that is spent; nothing was reserved. */
  | { ok: false; refusedBy: BudgetLedger };

/** How much headroom a lease takes (see `Store.leaseBudget`). */
export interface LeaseSizing {
  /** At least this much, if the budget is not spent: one request's estimate. */
  minUsd: number;
  /** At most this much. */
  maxUsd: number;
  /** This share of what is left (limit − spent − reserved), between the two. */
  share: number;
}

export type LeaseOutcome =
  | { ok: true; grantedUsd: number; ledger: BudgetLedger }
  /** The blocking budget is spent; nothing was reserved. */
  | { ok: false; refusedBy: BudgetLedger };

/** What a finished request adds to a budget it counts toward. */
export interface BudgetCharge extends BudgetClaim {
  costUsd: number;
}

export interface BudgetSettlement {
  ledger: BudgetLedger;
  /** The highest threshold this charge crossed that had not been alerted, or null. */
  crossed: number | null;
}

/** Reservations older than this stop counting: a replica that crashed mid-request never settles them. */
export const RESERVATION_LIFETIME_MS = 3_600_000;

/**
 * What one replica tells the others sharing its store: a document kind to reload, or a live event
 * to pass to its own WebSocket clients. The embedded store has no other replicas: it reports none
 * of those.
 *
 * `key` and `user` are announced by the store itself whenever `revokeKey`, `renewKey` or
 * `updateUser` changes one, to the other replicas and to this store's own watchers too (each
 * replica caches keys and users for authentication, this one included), on every store.
 * A document write is sent to the other replicas, and told to this store's own watchers as `local`.
 * `resync`: this replica may miss or have missed changes (its listening connection was lost:
 * `listening` false, or is back: true); whatever caches them should start afresh, and cache nothing
 * new while not listening (a change made meanwhile would go unheard). Never sent to other replicas.
 */
export type StoreChange =
  /**
   * `local`: this replica's own write, told to its own watchers only (never sent): a reload of that
   * kind under way may have read the documents before the write and must run once more.
   */
  | { kind: 'doc'; docKind: DocKind; local?: true }
  | { kind: 'event'; event: BridgeEvent; audience: Audience }
  | { kind: 'key'; id: string }
  | { kind: 'user'; id: string }
  | { kind: 'resync'; listening: boolean }
  /** Whether other replicas are there to hear live events (this replica's own news, never sent). */
  | { kind: 'peers'; present: boolean }
  /**
   * What a replica's rate-limit windows counted since it last said (server/spend/rate-limits.ts,
   * `RateCount`s); sent only while other replicas are there to hear it.
   */
  | { kind: 'rate'; counts: RateCount[] }
  /**
   * A stored provider response (OpenAI Responses' `resp_…`) and the user who created it, told as
   * soon as a replica knows (server/audit/response-owners.ts): a follow-up another replica serves
   * finds its owner before the record is stored; with the first of its stored output `items` once
   * known, and which of them this replica holds `contested` (another user's too: nobody's). Sent
   * only while other replicas are there.
   */
  | { kind: 'response'; id: string; userId: string; items?: string[]; contested?: string[] }
  /**
   * The MCP gateway calls a replica (`replica`, its own id) runs per user, repeated while they run
   * (server/gateway/call-slots.ts); sent only while other replicas are there.
   */
  | { kind: 'gateway'; replica: string; counts: [userId: string, running: number][] };

/**
 * Values the first bridge on a store sets and every later one compares its own against; never a
 * secret. `key_hash_verifier`: an HMAC of a fixed text under the key-hash secret
 * (server/identity/key-hash-check.ts).
 */
/**
 * `key_hash_verifier`: proves replicas hash keys alike. `chain_anchor`: where the kept audit chain
 * starts (ChainAnchor as JSON), moved only by pruning.
 */
export type StoreSetting = 'key_hash_verifier' | 'chain_anchor';

/** What may change about a user after creating them (`deactivatedAt`: SCIM deprovisioning; null reactivates). */
/** A record whose searchable column (kept beside it) does not say what the record says. */
export interface ColumnAtOdds {
  readonly seq: number;
  readonly id: string;
  readonly column: string;
}

export type UserPatch = Partial<Pick<User, 'name' | 'team' | 'role' | 'deactivatedAt'>>;

/** An interception before the store has given it its place in the append order. */
export type NewInterception = Omit<Interception, 'seq'>;

/** What one replica's rate limiter counted against a window (by its id) since it last told the others. */
export type RateCount = [windowId: string, requests: number, tokens: number];

/**
 * Everything the bridge persists. One contract, several implementations (embedded, PostgreSQL);
 * test/store/contract.ts runs the same suite against each.
 */
export interface Store {
  readonly kind: string;
  /** Whether other bridge processes may use the same data (then caches follow `watch` and events are `broadcast`). */
  readonly shared: boolean;
  open(): Promise<void>;
  /** Flushes everything accepted so far, then releases files and connections. */
  close(): Promise<void>;
  /** Whether the store can take writes now (for `/readyz`); `detail` says why not. */
  health(): Promise<StoreHealth>;

  countUsers(): Promise<number>;
  createUser(user: User): Promise<void>;
  getUserById(id: string): Promise<User | undefined>;
  getUserByEmail(email: string): Promise<User | undefined>;
  listUsers(): Promise<User[]>;
  /** Changes a user's name, team or role (fields left out stay as they are); undefined if no such user. */
  updateUser(id: string, patch: UserPatch): Promise<User | undefined>;

  createKey(key: KeyRecord): Promise<void>;
  findKeyByHash(hash: string): Promise<KeyRecord | undefined>;
  getKey(id: string): Promise<KeyRecord | undefined>;
  listKeys(userId: string): Promise<KeyRecord[]>;
  /** Marks the key revoked; returns it, or undefined when there is no such key. */
  revokeKey(id: string, at: string): Promise<KeyRecord | undefined>;
  /**
   * Moves a live key's expiry to `expiresAt` (never earlier than it is); undefined when there is no
   * such key. A revoked key stays revoked and unchanged.
   */
  renewKey(id: string, expiresAt: string): Promise<KeyRecord | undefined>;
  /** Best effort, may be batched: last-use times are informative, not security relevant. */
  touchKey(id: string, at: string): void;

  /**
   * Appends a finished interception. Resolves once it is durable; callers on the request path do not
   * wait for it, so durability never delays the client.
   */
  appendInterception(rec: NewInterception): Promise<Interception>;
  /** Newest first. `cursor` is the opaque `nextCursor` of the previous page. */
  listInterceptions(filter: InterceptionFilter, limit: number, cursor?: string): Promise<Page<Interception>>;
  getInterception(id: string): Promise<Interception | undefined>;
  /**
   * The user whose record holds this `responseId` (the provider's id of a stored answer), or
   * undefined when no kept record does: one indexed lookup, never a scan. Who may read, delete or
   * continue a stored response (server/audit/response-owners.ts).
   */
  responseOwner(responseId: string): Promise<string | undefined>;
  /**
   * For each of `ids` that an output item of a kept record's stored answer has
   * (`responseItems`), the user whose records hold it: who may name that item in a request's input
   * (server/audit/response-owners.ts). Null when records of several users hold it (an upstream
   * that echoed one user's id into another's answer), or more than ITEM_RECORDS_LIMIT records
   * (no unique id): nobody's. Ids no record holds are absent.
   * Indexed, never a scan of the records.
   */
  responseItemOwners(ids: readonly string[]): Promise<Map<string, string | null>>;
  /**
   * Every matching record, oldest first, exactly as stored (for exports and chain verification).
   * Streams: holds only what it is yielding, however many records match.
   */
  scanInterceptions(filter: InterceptionFilter): AsyncIterable<Interception>;
  /**
   * Every record, oldest first, as `scanInterceptions({})` gives them, for chain verification,
   * where the store keeps searchable columns beside each record (PostgreSQL): each row's columns are
   * compared with its record (the hashed JSON) in the same pass, and one at odds is told to `odd`.
   * Absent: the store keeps no such columns (the embedded store's index is built from the records).
   */
  scanForVerify?(odd: (at: ColumnAtOdds) => void): AsyncIterable<Interception>;
  /**
   * Deletes records that started before `before` (retention), oldest first, without pausing
   * writes; a store may keep a few older ones it cannot drop separately. Returns how many went.
   * The oldest kept record anchors the hash chain.
   */
  pruneInterceptions(before: string): Promise<number>;
  /**
   * The newest chained record's place and hash, kept apart from the records and never moved back
   * (records cut off the end of the chain show as missing against it). Read it before scanning.
   */
  chainHead(): Promise<ChainHead>;
  /** Admins' reads of other users' records: themselves part of the audit trail. */
  appendAccessLog(entry: AccessLogEntry): Promise<void>;
  /** Records one MCP gateway tool call; resolves once it is durable. */
  appendGatewayCall(call: GatewayToolCall): Promise<void>;
  /** MCP gateway tool calls, newest first. */
  listGatewayCalls(query: GatewayCallQuery): Promise<GatewayToolCall[]>;
  /**
   * Every MCP gateway call at or after `since` and before `until`, oldest first, exactly as stored
   * (audit export, store copy). Streams, like scanInterceptions.
   */
  scanGatewayCalls(query: {
    since?: string | undefined;
    until?: string | undefined;
    /** Only this user's calls (a store reads no other user's). */
    userId?: string | undefined;
  }): AsyncIterable<GatewayToolCall>;
  /**
   * Deletes MCP gateway calls made before `before` (retention, the interceptions' window); a store
   * may keep a few older ones it cannot drop separately. Returns how many went.
   */
  pruneGatewayCalls(before: string): Promise<number>;
  /**
   * Deletes keys revoked or expired before `before` (retention, the interceptions' window: no
   * record kept can have used one). Returns how many went. A deleted key's token is then an
   * unknown key (`401 unauthorized`), as any other.
   */
  pruneKeys(before: string): Promise<number>;
  /** Newest first. */
  listAccessLog(query: { since?: string | undefined; limit: number }): Promise<AccessLogEntry[]>;

  /**
   * Hourly rollups, kept up to date as interceptions are appended (never by scanning records per
   * query), so spend queries cost the same with a thousand records or millions.
   */
  usageBuckets(query: BucketQuery): Promise<UsageBucket[]>;
  /**
   * When each user who ever made a request made their newest one (its `startedAt`), by user id: a
   * per-user rollup kept with the hourly ones, so "last used" costs one row per user, not a scan.
   */
  lastRequestAt(): Promise<Map<string, string>>;

  listDocs<T>(kind: DocKind): Promise<T[]>;
  /** One document by the id it was put under; undefined if there is none. */
  getDoc<T>(kind: DocKind, id: string): Promise<T | undefined>;
  putDoc<T>(kind: DocKind, id: string, doc: T): Promise<void>;
  /** Returns whether there was such a document. */
  deleteDoc(kind: DocKind, id: string): Promise<boolean>;

  appendAlert(alert: Alert): Promise<void>;
  /** Newest first. */
  listAlerts(query: AlertQuery): Promise<Alert[]>;

  /**
   * Admits a request against budgets atomically (across replicas where there are several): unless
   * a blocking claim's spent plus reserved has reached its limit, reserves `amountUsd` on every
   * claim for `interceptionId`. Reservations older than RESERVATION_LIFETIME_MS stop counting.
   */
  reserveBudgets(interceptionId: string, claims: BudgetClaim[], amountUsd: number): Promise<ReserveOutcome>;
  /**
   * Drops every reservation `interceptionId` holds and adds each charge's cost to its ledger,
   * marking the highest threshold it crossed as alerted (so one replica alerts it, once).
   */
  settleBudgets(interceptionId: string, charges: BudgetCharge[]): Promise<BudgetSettlement[]>;
  /**
   * Reserves headroom on one budget ledger for a replica to admit requests against without asking
   * the store each time (a lease): unless a blocking claim's spent plus reserved has reached its
   * limit, reserves `sizing.share` of what is left, within [minUsd, maxUsd] (a claim that does not
   * block: minUsd), under `leaseId`, atomically with the check. The lease is a reservation like any
   * other: `settleBudgets(leaseId, charges)` returns it and charges what was spent against it.
   */
  leaseBudget(leaseId: string, claim: BudgetClaim, sizing: LeaseSizing): Promise<LeaseOutcome>;
  /** The current ledgers of these budget periods (started from the rollups where new). */
  budgetLedgers(claims: BudgetClaim[]): Promise<BudgetLedger[]>;

  /**
   * Stores `value` under `name` unless one is stored already (the first bridge wins, across
   * replicas), and returns the value stored.
   */
  claimSetting(name: StoreSetting, value: string): Promise<string>;
  /** A setting as stored, if any. */
  getSetting(name: StoreSetting): Promise<string | undefined>;

  /** Changes other replicas announced (document writes are announced by the store itself). Returns the unsubscribe. */
  watch(listener: (change: StoreChange) => void): () => void;
  /** Announces a change to the other replicas; best effort, never throws. */
  broadcast(change: StoreChange): void;
}

/** Records holding one item id beyond which it is nobody's (Store.responseItemOwners). */
export const ITEM_RECORDS_LIMIT = 64;
