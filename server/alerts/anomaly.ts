import { totalTokens } from '../../shared/usage';
import type { AlertConfig } from '../config';
import type { UsageBucket } from '../spend/rollup';
import type { NewInterception, Store } from '../store/types';
import type { AlertService, NewAlert } from './alert-service';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const BASELINE_DAYS = 7;
/** Fewer active hours than this in the baseline window: not enough history to call anything abnormal. */
const MIN_ACTIVE_HOURS = 3;
/** Fewer active teammates than this: a median says nothing. */
const MIN_TEAMMATES = 3;
/** One alert per user and rule per hour: an ongoing spike is one incident, not hundreds. */
const COOLDOWN_MS = HOUR;

/** What one user did recently, and what is normal for them and their team. */
export interface AnomalyInput {
  lastHour: { costUsd: number; tokens: number };
  lastMinuteRequests: number;
  /** Cost and tokens of each hour in the baseline window in which the user was active. */
  ownActiveHours: { costUsd: number; tokens: number }[];
  /** Last-hour cost of each other teammate active in the last hour. */
  teammatesLastHourUsd: number[];
}

export interface Finding {
  rule: 'spend_vs_baseline' | 'tokens_vs_baseline' | 'spend_vs_team' | 'request_burst';
  observed: number;
  baseline: number;
  unit: 'usd' | 'tokens' | 'requests';
  message: string;
}

export type AnomalyRules = Pick<
  AlertConfig,
  'anomalyFactor' | 'anomalyMinUsd' | 'anomalyMinTokens' | 'burstRpm'
>;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const usd = (n: number): string => `$${n.toFixed(2)}`;
const x = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(1)}×` : 'far above');

/**
 * The anomaly rules, as a pure function so each one can be explained and tested on synthetic
 * history: a user's last hour against their own typical active hour (spend and tokens), against
 * their team's median, and a burst of requests in one minute.
 */
export function detect(input: AnomalyInput, rules: AnomalyRules): Finding[] {
  const out: Finding[] = [];
  const f = rules.anomalyFactor;
  const { lastHour } = input;
  if (input.ownActiveHours.length >= MIN_ACTIVE_HOURS) {
    const n = input.ownActiveHours.length;
    const baseUsd = input.ownActiveHours.reduce((s, h) => s + h.costUsd, 0) / n;
    const baseTok = input.ownActiveHours.reduce((s, h) => s + h.tokens, 0) / n;
    if (lastHour.costUsd >= rules.anomalyMinUsd && lastHour.costUsd > f * baseUsd) {
      out.push({
        rule: 'spend_vs_baseline',
        observed: lastHour.costUsd,
        baseline: baseUsd,
        unit: 'usd',
        message: `Spend in the last hour (${usd(lastHour.costUsd)}) is ${x(lastHour.costUsd, baseUsd)} this user's typical active hour (${usd(baseUsd)}, mean of ${n} active hours in the last ${BASELINE_DAYS} days); the rule fires above ${f}×.`,
      });
    }
    if (lastHour.tokens >= rules.anomalyMinTokens && lastHour.tokens > f * baseTok) {
      out.push({
        rule: 'tokens_vs_baseline',
        observed: lastHour.tokens,
        baseline: baseTok,
        unit: 'tokens',
        message: `Tokens in the last hour (${lastHour.tokens}) are ${x(lastHour.tokens, baseTok)} this user's typical active hour (${Math.round(baseTok)}, mean of ${n} active hours in the last ${BASELINE_DAYS} days); the rule fires above ${f}×.`,
      });
    }
  }
  if (input.teammatesLastHourUsd.length >= MIN_TEAMMATES) {
    const med = median(input.teammatesLastHourUsd);
    if (lastHour.costUsd >= rules.anomalyMinUsd && lastHour.costUsd > f * med) {
      out.push({
        rule: 'spend_vs_team',
        observed: lastHour.costUsd,
        baseline: med,
        unit: 'usd',
        message: `Spend in the last hour (${usd(lastHour.costUsd)}) is ${x(lastHour.costUsd, med)} the median of ${input.teammatesLastHourUsd.length} active teammates (${usd(med)}); the rule fires above ${f}×.`,
      });
    }
  }
  if (rules.burstRpm > 0 && input.lastMinuteRequests > rules.burstRpm) {
    out.push({
      rule: 'request_burst',
      observed: input.lastMinuteRequests,
      baseline: rules.burstRpm,
      unit: 'requests',
      message: `${input.lastMinuteRequests} requests in the last minute, above the burst threshold of ${rules.burstRpm}.`,
    });
  }
  return out;
}

interface Recent {
  at: number;
  costUsd: number;
  tokens: number;
}

interface UserState {
  email: string;
  team: string | null;
  recent: Recent[];
  baseline: { fetchedAt: number; hours: { costUsd: number; tokens: number }[] } | null;
  lastAlert: Map<string, number>;
}

/**
 * Feeds the rules as interceptions end: keeps each user's last hour in memory, reads their
 * baseline from the hourly rollups (cached for ten minutes), and raises at most one alert per
 * user and rule per hour. Runs after the response, never on the request path.
 */
export class AnomalyWatcher {
  private readonly users = new Map<string, UserState>();

  constructor(
    private readonly store: Store,
    private readonly alerts: AlertService,
    private readonly rules: AnomalyRules,
    private readonly now: () => number = Date.now,
  ) {}

  private state(rec: NewInterception): UserState {
    let s = this.users.get(rec.userId);
    if (!s) {
      s = { email: rec.userEmail, team: rec.team, recent: [], baseline: null, lastAlert: new Map() };
      this.users.set(rec.userId, s);
    }
    s.team = rec.team;
    return s;
  }

  private prune(s: UserState, now: number): void {
    while (s.recent.length > 0 && s.recent[0]!.at <= now - HOUR) s.recent.shift();
  }

  private lastHour(s: UserState, now: number): { costUsd: number; tokens: number } {
    this.prune(s, now);
    let costUsd = 0;
    let tokens = 0;
    for (const r of s.recent) {
      costUsd += r.costUsd;
      tokens += r.tokens;
    }
    return { costUsd, tokens };
  }

  private async baseline(
    userId: string,
    s: UserState,
    now: number,
  ): Promise<{ costUsd: number; tokens: number }[]> {
    if (s.baseline && now - s.baseline.fetchedAt < 10 * MINUTE) return s.baseline.hours;
    const currentHour = now - (now % HOUR);
    const buckets: UsageBucket[] = await this.store.usageBuckets({
      userId,
      since: new Date(currentHour - BASELINE_DAYS * 24 * HOUR).toISOString(),
      // The current and previous hour are what is being judged, not the baseline.
      until: new Date(currentHour - HOUR).toISOString(),
    });
    const byHour = new Map<string, { costUsd: number; tokens: number }>();
    for (const b of buckets) {
      const h = byHour.get(b.hour) ?? { costUsd: 0, tokens: 0 };
      h.costUsd += b.costUsd;
      h.tokens += totalTokens(b.usage);
      byHour.set(b.hour, h);
    }
    const hours = [...byHour.values()];
    s.baseline = { fetchedAt: now, hours };
    return hours;
  }

  /** Call as each interception ends; resolves when its rules have run. */
  async observe(rec: NewInterception): Promise<void> {
    const now = this.now();
    const s = this.state(rec);
    s.recent.push({ at: now, costUsd: rec.costUsd ?? 0, tokens: totalTokens(rec.usage) });
    const lastHour = this.lastHour(s, now);
    const lastMinuteRequests = s.recent.filter((r) => r.at > now - MINUTE).length;
    const teammatesLastHourUsd: number[] = [];
    if (rec.team !== null) {
      for (const [id, t] of this.users) {
        if (id === rec.userId || t.team !== rec.team) continue;
        const h = this.lastHour(t, now);
        if (t.recent.length > 0) teammatesLastHourUsd.push(h.costUsd);
      }
    }
    const ownActiveHours = await this.baseline(rec.userId, s, now);
    const findings = detect(
      { lastHour, lastMinuteRequests, ownActiveHours, teammatesLastHourUsd },
      this.rules,
    );
    for (const f of findings) {
      const last = s.lastAlert.get(f.rule);
      if (last !== undefined && now - last < COOLDOWN_MS) continue;
      s.lastAlert.set(f.rule, now);
      const alert: NewAlert = {
        kind: 'anomaly',
        rule: f.rule,
        userId: rec.userId,
        userEmail: s.email,
        team: rec.team,
        observed: Math.round(f.observed * 1e6) / 1e6,
        baseline: Math.round(f.baseline * 1e6) / 1e6,
        unit: f.unit,
        budgetId: null,
        message: `${s.email}: ${f.message}`,
      };
      this.alerts.raise(alert);
    }
  }
}
