import type { Usage } from './usage';

export type UsageGroupBy = 'user' | 'team' | 'model' | 'client' | 'day';
export type Period = 'day' | 'week' | 'month';

/** A period as an adjective in messages: `daily`, `weekly`, `monthly`. */
export function periodly(period: Period | 'session'): string {
  if (period === 'session') return 'session';
  return period === 'day' ? 'daily' : `${period}ly`;
}

/** One row of `GET /api/v1/usage`: what a user, team, model, client or day used and cost. */
export interface UsageRow {
  key: string;
  requests: number;
  usage: Usage;
  /**
   * Sum of the priced requests' cost to the organisation; requests with an unknown price are
   * counted in `unpricedRequests`, never as $0. Requests billed to the user are not in it.
   */
  costUsd: number;
  unpricedRequests: number;
  /** What the requests sent with the users' own credentials cost (`billedTo: "user"`): theirs, not the organisation's. */
  userBilledCostUsd: number;
  /** Requests sent with the users' own credentials (also counted in `requests`). */
  userBilledRequests: number;
}

export interface UsageReport {
  groupBy: UsageGroupBy;
  /** The window actually summarised: rollups are hourly, so bounds are widened to whole hours. */
  since: string | null;
  until: string | null;
  rows: UsageRow[];
  totals: Omit<UsageRow, 'key'>;
}

export type BudgetScope = 'user' | 'team' | 'org';
export type BudgetAction = 'alert' | 'block';

export interface Budget {
  id: string;
  scope: BudgetScope;
  /** A user's id (emails are resolved on write), a team name, or `*` for the org. */
  subject: string;
  period: Period;
  limitUsd: number;
  action: BudgetAction;
  /** Fractions of the limit that raise a budget alert once per period. */
  thresholds: number[];
  createdAt: string;
  updatedAt: string;
}

/**
 * A session cap (docs/spend.md "Session caps"): a limit on each agent session's total cost, over
 * the session's life. Set on the budgets API as `scope: "session"`.
 */
export interface SessionBudget extends Omit<Budget, 'scope' | 'period'> {
  scope: 'session';
  period: 'session';
  /** The user (id) or team whose sessions it caps (`subjectKind` says which), or `*` for every session. */
  subject: string;
  /** Absent: every session. */
  subjectKind?: 'user' | 'team';
}

/** A session cap has a ledger per session, none to show: it reports nothing spent and never resets. */
export interface SessionBudgetStatus extends SessionBudget {
  /** When the cap was set. */
  periodStart: string;
  resetsAt: null;
  spentUsd: number;
  reservedUsd: number;
}

export type AnyBudget = Budget | SessionBudget;
export type AnyBudgetStatus = BudgetStatus | SessionBudgetStatus;

/** A budget with where it stands in its current period. */
export interface BudgetStatus extends Budget {
  periodStart: string;
  resetsAt: string;
  spentUsd: number;
  /** Estimated cost of requests still running. */
  reservedUsd: number;
}

export type RateLimitScope = 'user' | 'key';

export interface RateLimit {
  id: string;
  scope: RateLimitScope;
  /** A user's id (emails are resolved on write), or a key id. */
  subject: string;
  /** Requests per minute; null for no request limit. */
  rpm: number | null;
  /** Tokens (input, cached and output) per minute; null for no token limit. */
  tpm: number | null;
  createdAt: string;
}

export interface ModelPolicy {
  /** A team name, or `*` for everyone. */
  team: string;
  /** Globs (`claude-*`) or regexes (`/^gpt-5/`); when non-empty, only matching models are allowed. */
  allow: string[];
  /** Globs or regexes; a matching model is refused even when allowed. */
  deny: string[];
  updatedAt: string;
}

/** `upstream`: about the bridge's own upstream credentials (a pool key refused with 401/403). */
export type AlertKind = 'budget' | 'anomaly' | 'upstream';

export interface Alert {
  id: string;
  kind: AlertKind;
  /** The rule that fired: `budget_threshold`, `session_cap`, `spend_vs_baseline`, `tokens_vs_baseline`, `spend_vs_team`, `request_burst`, `upstream_key_auth_failed`. */
  rule: string;
  at: string;
  /** The user the alert is about; null for team- or org-wide alerts. */
  userId: string | null;
  userEmail: string | null;
  team: string | null;
  /** What was measured, and what it was compared with: an alert always says why it fired. */
  observed: number;
  baseline: number;
  unit: 'usd' | 'tokens' | 'requests';
  message: string;
  budgetId: string | null;
  /** The session a session-cap alert is about, as the client named it (not in `message` unless plain). */
  sessionId?: string;
}

/** An admin's price for a model, in USD per million tokens (the genai-prices field names); a value may be tiered. */
export type PriceValue = number | { base: number; tiers: { start: number; price: number }[] };

export interface ModelPriceOverride {
  model: string;
  /** The provider the override applies to, or null for any. */
  provider: string | null;
  input_mtok: PriceValue;
  output_mtok: PriceValue;
  cache_read_mtok?: PriceValue;
  cache_write_mtok?: PriceValue;
  /** One-hour cache writes (Anthropic); left out: the price data's, else the cache-write price. */
  cache_write_1h_mtok?: PriceValue;
  /** USD per 1,000 web searches; left out: the price data's fee for the model, if any. */
  web_searches_kcount?: number;
  updatedAt: string;
}

/** A model requests were made for that no price is known for. */
export interface UnknownModel {
  provider: string;
  model: string;
  requests: number;
  firstSeen: string;
  lastSeen: string;
}

/**
 * Whether a member may read an alert about themselves. A `spend_vs_team` alert compares them with
 * their teammates: its message and baseline give the team's median spend and how many were
 * active, which members are not shown elsewhere (team usage is an admin's). Admins see it.
 */
export function memberMayRead(alert: Pick<Alert, 'rule'>): boolean {
  return !MEMBER_UNREAD_RULES.includes(alert.rule);
}

/** The rules memberMayRead refuses. */
export const MEMBER_UNREAD_RULES: readonly string[] = ['spend_vs_team'];
