import { totalTokens } from '../../shared/usage';
import { clampToNow } from '../clock';
import type { AlertConfig } from '../config';
import { roundUsd, type UsageBucket } from '../core/rollup';
import type { NewInterception, Store } from '../store/types';
import type { AlertService, NewAlert } from './alert-service';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const BASELINE_DAYS = 7;
/** How long a user's baseline, read from the rollups, is used before it is read again. */
const BASELINE_FRESH_MS = 10 * MINUTE;
/** Fewer active hours than this in the baseline window: not enough history to call anything abnormal. */
const MIN_ACTIVE_HOURS = 3;
/** Fewer active teammates than this: a median says nothing. */
const MIN_TEAMMATES = 3;
/** Users whose last hour is kept at most; the least recently active are forgotten first. */
export const MAX_TRACKED_USERS = 10_000;
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

/**
 * A user's last hour in 60 one-minute buckets with running sums, and their last minute's request
 * times: adding and reading are O(1) however busy the user is (this runs on every request).
 */
export class RecentActivity {
  private readonly cost = new Float64Array(60);
  private readonly tokens = new Float64Array(60);
  private costSum = 0;
  private tokenSum = 0;
  /** The minute (epoch minutes) the newest bucket stands for. */
  private minute = -1;
  private readonly times: number[] = [];
  private head = 0;
  lastActive = 0;

  private advance(now: number): void {
    const m = Math.floor(now / MINUTE);
    if (this.minute === -1) this.minute = m;
    // The wall clock stepped back: the hour goes on from now (its buckets leave it minute by minute
    // as before), where it stood still for the length of the step and summed without end.
    if (m < this.minute) {
      this.minute = m;
      clampToNow(this.times, now);
    }
    const steps = Math.min(60, m - this.minute);
    for (let k = 1; k <= steps; k++) {
      const b = (this.minute + k) % 60;
      this.costSum -= this.cost[b]!;
      this.tokenSum -= this.tokens[b]!;
      this.cost[b] = 0;
      this.tokens[b] = 0;
    }
    if (m > this.minute) this.minute = m;
    while (this.head < this.times.length && this.times[this.head]! <= now - MINUTE) this.head++;
    if (this.head > 1024) {
      this.times.splice(0, this.head);
      this.head = 0;
    }
  }

  add(now: number, costUsd: number, tokens: number): void {
    this.advance(now);
    const b = this.minute % 60;
    this.cost[b] = this.cost[b]! + costUsd;
    this.tokens[b] = this.tokens[b]! + tokens;
    this.costSum += costUsd;
    this.tokenSum += tokens;
    this.times.push(now);
    this.lastActive = now;
  }

  lastHour(now: number): { costUsd: number; tokens: number } {
    this.advance(now);
    // Running sums of floats drift by ulps: never report a negative.
    return { costUsd: Math.max(0, this.costSum), tokens: Math.max(0, this.tokenSum) };
  }

  lastMinuteRequests(now: number): number {
    this.advance(now);
    return this.times.length - this.head;
  }
}

interface UserState {
  email: string;
  team: string | null;
  recent: RecentActivity;
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
  /** The user set last in `users` (its newest entry). */
  private newest: string | undefined;
  private readonly teams = new Map<string, Set<string>>();

  constructor(
    private readonly store: Store,
    private readonly alerts: AlertService,
    private readonly rules: AnomalyRules,
    private readonly now: () => number = Date.now,
  ) {}

  /** How many users' recent activity is kept. */
  get trackedUsers(): number {
    return this.users.size;
  }

  /** Whether a user's recent activity is kept. */
  tracks(userId: string): boolean {
    return this.users.has(userId);
  }

  private state(rec: NewInterception): UserState {
    let s = this.users.get(rec.userId);
    // The least recently active go first: memory stays bounded however many keys send. A user
    // already the newest (one user's turns back to back) stays where they are.
    if (s) {
      if (this.newest !== rec.userId) {
        this.users.delete(rec.userId);
        this.users.set(rec.userId, s);
      }
    } else {
      if (this.users.size >= MAX_TRACKED_USERS) {
        const [oldId, old] = this.users.entries().next().value!;
        this.users.delete(oldId);
        if (old.team !== null) this.teams.get(old.team)?.delete(oldId);
      }
      s = {
        email: rec.userEmail,
        team: rec.team,
        recent: new RecentActivity(),
        baseline: null,
        lastAlert: new Map(),
      };
      this.users.set(rec.userId, s);
    }
    this.newest = rec.userId;
    if (s.team !== rec.team && s.team !== null) this.teams.get(s.team)?.delete(rec.userId);
    s.team = rec.team;
    if (rec.team !== null) {
      let members = this.teams.get(rec.team);
      if (!members) {
        members = new Set();
        this.teams.set(rec.team, members);
      }
      members.add(rec.userId);
    }
    return s;
  }

  /** Reads the user's baseline from the rollups and keeps it (`observe` uses it while fresh). */
  private async readBaseline(
    userId: string,
    s: UserState,
    now: number,
  ): Promise<{ costUsd: number; tokens: number }[]> {
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

  /**
   * Call as each interception ends. Judges the interception against the rules: at once
   * (undefined) when the user's baseline is cached, as it is for all but a user's first request in
   * ten minutes (a promise and its microtask on every request bought nothing); otherwise a promise
   * that resolves once the baseline is read and the rules have run.
   */
  observe(rec: NewInterception): Promise<void> | undefined {
    const now = this.now();
    const s = this.state(rec);
    // Spend rules watch the organisation's money, as the rollups they compare with do.
    s.recent.add(now, rec.billedTo === 'user' ? 0 : (rec.costUsd ?? 0), totalTokens(rec.usage));
    const lastHour = s.recent.lastHour(now);
    const lastMinuteRequests = s.recent.lastMinuteRequests(now);
    const teammatesLastHourUsd: number[] = [];
    if (rec.team !== null) {
      for (const id of this.teams.get(rec.team) ?? []) {
        if (id === rec.userId) continue;
        const t = this.users.get(id);
        if (t && now - t.recent.lastActive < HOUR) teammatesLastHourUsd.push(t.recent.lastHour(now).costUsd);
      }
    }
    const judge = (ownActiveHours: { costUsd: number; tokens: number }[]): void =>
      this.judge(rec, s, now, { lastHour, lastMinuteRequests, ownActiveHours, teammatesLastHourUsd });
    // Fetched "in the future" (the clock stepped back since): read again, not kept for the step.
    if (s.baseline && now >= s.baseline.fetchedAt && now - s.baseline.fetchedAt < BASELINE_FRESH_MS) {
      judge(s.baseline.hours);
      return undefined;
    }
    return this.readBaseline(rec.userId, s, now).then(judge);
  }

  private judge(rec: NewInterception, s: UserState, now: number, window: AnomalyInput): void {
    const findings = detect(window, this.rules);
    for (const f of findings) {
      const last = s.lastAlert.get(f.rule);
      if (last !== undefined && now >= last && now - last < COOLDOWN_MS) continue;
      s.lastAlert.set(f.rule, now);
      const alert: NewAlert = {
        kind: 'anomaly',
        rule: f.rule,
        userId: rec.userId,
        userEmail: s.email,
        team: rec.team,
        observed: roundUsd(f.observed),
        baseline: roundUsd(f.baseline),
        unit: f.unit,
        budgetId: null,
        message: `${s.email}: ${f.message}`,
      };
      this.alerts.raise(alert);
    }
  }
}
