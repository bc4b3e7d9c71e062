import type { KeyInfo, User } from './identity';

/** The answer to `POST /api/v1/session`: who signed in. The key itself is never echoed. */
export interface SessionInfo {
  user: User;
  key: KeyInfo;
  expiresAt: string;
}

export type SeriesBy = 'team' | 'model' | 'user';
export type SeriesStep = 'hour' | 'day';

/** `GET /api/v1/usage/series`: spend over time, one line per team, model or user. */
export interface UsageSeries {
  by: SeriesBy;
  step: SeriesStep;
  since: string;
  until: string;
  /** Start of each step (ISO 8601, UTC). */
  times: string[];
  /** The largest groups by cost; the rest are summed into one `(other)` line. */
  series: { key: string; costUsd: number[]; requests: number[] }[];
}
