import type { Role } from './identity';
import type { Period } from './spend';

/** What `GET /api/v1/usage/users` may sort by. */
export const ENGAGEMENT_SORTS = ['cost', 'requests', 'tokens', 'activeDays', 'lastUsedAt', 'email'] as const;
export type EngagementSort = (typeof ENGAGEMENT_SORTS)[number];
export type SortOrder = 'asc' | 'desc';

/** Tokens as the other usage reports count them, with their sum (`output` includes `reasoning`). */
export interface EngagementTokens {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
  reasoning: number;
  /** input + output + cacheRead + cacheWrite. */
  total: number;
}

/** One provisioned user in `GET /api/v1/usage/users`, with zeros when they made no request in the window. */
export interface EngagementRow {
  userId: string;
  email: string;
  name: string | null;
  /** The user's team and role now (not the ones their requests were recorded with). */
  team: string | null;
  role: Role;
  createdAt: string;
  requests: number;
  tokens: EngagementTokens;
  /** Sum of the priced requests' cost; requests with an unknown price are in `unpricedRequests`, never $0. */
  costUsd: number;
  unpricedRequests: number;
  /** Distinct UTC days in the window with at least one request. */
  activeDays: number;
  /** The start of the user's newest request ever (not only in the window); null if they never made one. */
  lastUsedAt: string | null;
}

export interface EngagementReport {
  period: Period;
  /** The window summarised, widened to whole hours (the rollups' grain). */
  since: string;
  until: string;
  sort: EngagementSort;
  order: SortOrder;
  team: string | null;
  rows: EngagementRow[];
}
