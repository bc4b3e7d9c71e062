import { useEffect, useRef, useState } from 'preact/hooks';
import type { UsageSeries } from '../../shared/admin';
import type { Me } from '../../shared/identity';
import type { BudgetStatus, UsageReport } from '../../shared/spend';
import { api, query } from '../api';
import { SpendChart } from '../chart';
import type { FeedRow } from '../feed';
import { clock, pct, startOfUtcDay, startOfUtcMonth, tokens, usd } from '../format';
import { Bar, ErrorNote, Section, useLoad } from '../ui';

type Budget = BudgetStatus & { label: string };

interface TopRow {
  userId: string;
  email: string;
  team: string | null;
  share: number;
  requests: number;
  tokens: number;
  costUsd: number;
}

interface MyUsage {
  costUsd: number;
  requests: number;
  unpricedRequests: number;
  /** Absent from a bridge before bring-your-own-key. */
  userBilledCostUsd?: number;
  budgets: Budget[];
}

/** How often the overview's totals, top users and charts reload while requests end. */
const REFRESH_MS = 10_000;

/**
 * A value that follows `v` at most once per `ms`: the first change at once, later ones when `ms`
 * has passed since the last. Waiting for a quiet second instead never reloaded under an
 * organisation's steady traffic, and a reload is six reports over every team's buckets.
 */
function useThrottled<T>(v: T, ms: number): T {
  const [settled, setSettled] = useState(v);
  const last = useRef(0);
  useEffect(() => {
    if (v === settled) return;
    const t = setTimeout(
      () => {
        last.current = Date.now();
        setSettled(v);
      },
      Math.max(0, last.current + ms - Date.now()),
    );
    return () => clearTimeout(t);
  }, [v, ms, settled]);
  return settled;
}

/** `ownKeys`: what users paid with their own provider credentials (docs/routing.md), not in `costUsd`. */
interface Totals {
  today: { costUsd: number; requests: number; unpriced: number; ownKeys: number };
  month: { costUsd: number; requests: number; unpriced: number; ownKeys: number };
  budgets: Budget[];
}

async function adminTotals(): Promise<Totals> {
  const report = (since: Date) =>
    api<UsageReport>('GET', `/api/v1/usage${query({ groupBy: 'team', since: since.toISOString() })}`);
  const [day, month, budgets] = await Promise.all([
    report(startOfUtcDay()),
    report(startOfUtcMonth()),
    api<{ items: Budget[] }>('GET', '/api/v1/budgets'),
  ]);
  const t = (r: UsageReport) => ({
    costUsd: r.totals.costUsd,
    requests: r.totals.requests,
    unpriced: r.totals.unpricedRequests,
    ownKeys: r.totals.userBilledCostUsd ?? 0,
  });
  return { today: t(day), month: t(month), budgets: budgets.items.filter((b) => b.scope === 'org') };
}

async function memberTotals(): Promise<Totals> {
  const [day, month] = await Promise.all([
    api<MyUsage>('GET', '/api/v1/usage/me?period=day'),
    api<MyUsage>('GET', '/api/v1/usage/me?period=month'),
  ]);
  const t = (r: MyUsage) => ({
    costUsd: r.costUsd,
    requests: r.requests,
    unpriced: r.unpricedRequests,
    ownKeys: r.userBilledCostUsd ?? 0,
  });
  return { today: t(day), month: t(month), budgets: month.budgets };
}

function SpendCard({
  title,
  spent,
  requests,
  unpriced,
  ownKeys,
  budgets,
}: {
  title: string;
  spent: number;
  requests: number;
  unpriced: number;
  ownKeys: number;
  budgets: Budget[];
}) {
  return (
    <div class="stat" data-testid={`stat-${title.toLowerCase().replace(/\s+/g, '-')}`}>
      <h3>{title}</h3>
      <p class="big">{usd(spent)}</p>
      <p class="muted">
        {requests} requests{unpriced > 0 ? `, ${unpriced} with unknown price` : ''}
      </p>
      {ownKeys > 0 ? <p class="muted">and {usd(ownKeys)} paid with users' own keys</p> : null}
      {budgets.map((b) => (
        <div class="budget-line" key={b.id}>
          <span>
            {b.scope === 'org' ? 'org' : `${b.scope} ${b.label}`} budget: {usd(b.spentUsd)} of{' '}
            {usd(b.limitUsd)}
            {b.limitUsd > 0 ? ` (${pct(b.spentUsd / b.limitUsd)})` : ''}, {b.action}
          </span>
          <Bar value={b.spentUsd} max={b.limitUsd} label={`${usd(b.spentUsd)} of ${usd(b.limitUsd)}`} />
        </div>
      ))}
      {budgets.length === 0 ? <p class="muted">No budget for this period.</p> : null}
    </div>
  );
}

export function LiveFeed({ rows }: { rows: FeedRow[] }) {
  return (
    <table class="feed" data-testid="live-feed">
      <thead>
        <tr>
          <th>time</th>
          <th>what</th>
          <th>user</th>
          <th>model</th>
          <th>client</th>
          <th>detail</th>
          <th>cost</th>
          <th>status</th>
        </tr>
      </thead>
      <tbody>
        {rows.length === 0 ? (
          <tr>
            <td colSpan={8} class="muted">
              Waiting for requests…
            </td>
          </tr>
        ) : null}
        {rows.map((r) => (
          <tr key={r.id} class={`feed-${r.kind}`}>
            <td>{clock(r.at)}</td>
            <td>{r.kind}</td>
            <td>{r.user}</td>
            <td>{r.model ?? '—'}</td>
            <td>{r.client}</td>
            <td class="mono clip">{r.detail}</td>
            <td>{r.kind === 'request' ? usd(r.costUsd) : ''}</td>
            <td>{r.status}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** One chart of spend over time, by team or by model. */
function SeriesChart({ by, step, refresh }: { by: 'team' | 'model'; step: 'day' | 'hour'; refresh: number }) {
  const series = useLoad(
    () => api<UsageSeries>('GET', `/api/v1/usage/series${query({ by, step })}`),
    [by, step, refresh],
  );
  return (
    <div class="chart-box" data-testid={`chart-by-${by}`}>
      <h3>By {by}</h3>
      {series.data ? (
        series.data.series.length > 0 ? (
          <SpendChart data={series.data} />
        ) : (
          <p class="muted">No spend in this window yet.</p>
        )
      ) : null}
      <ErrorNote error={series.error} />
    </div>
  );
}

export function OverviewPage({ me, feed, ended }: { me: Me; feed: FeedRow[]; ended: number }) {
  const admin = me.user.role === 'admin';
  const refresh = useThrottled(ended, REFRESH_MS);
  const [step, setStep] = useState<'day' | 'hour'>('day');
  const totals = useLoad(() => (admin ? adminTotals() : memberTotals()), [admin, refresh]);
  const top = useLoad(
    () =>
      admin
        ? api<{ rows: TopRow[] }>(
            'GET',
            `/api/v1/usage/top${query({ by: 'cost', since: startOfUtcMonth().toISOString(), limit: 10 })}`,
          )
        : Promise.resolve({ rows: [] as TopRow[] }),
    [admin, refresh],
  );
  const dayBudgets = totals.data?.budgets.filter((b) => b.period === 'day') ?? [];
  const monthBudgets = totals.data?.budgets.filter((b) => b.period === 'month') ?? [];

  return (
    <div class="page overview">
      <div class="stats">
        <SpendCard
          title="Spend today"
          spent={totals.data?.today.costUsd ?? 0}
          requests={totals.data?.today.requests ?? 0}
          unpriced={totals.data?.today.unpriced ?? 0}
          ownKeys={totals.data?.today.ownKeys ?? 0}
          budgets={dayBudgets}
        />
        <SpendCard
          title="Spend this month"
          spent={totals.data?.month.costUsd ?? 0}
          requests={totals.data?.month.requests ?? 0}
          unpriced={totals.data?.month.unpriced ?? 0}
          ownKeys={totals.data?.month.ownKeys ?? 0}
          budgets={monthBudgets}
        />
      </div>
      <ErrorNote error={totals.error} />
      <Section
        title={`Spend over time, ${step === 'day' ? 'last 30 days' : 'last 48 hours'}`}
        actions={
          <button type="button" onClick={() => setStep(step === 'day' ? 'hour' : 'day')}>
            {step === 'day' ? 'Last 48 hours' : 'Last 30 days'}
          </button>
        }
      >
        <div class="charts">
          {admin ? <SeriesChart by="team" step={step} refresh={refresh} /> : null}
          <SeriesChart by="model" step={step} refresh={refresh} />
        </div>
      </Section>
      {admin ? (
        <Section title="Top users this month">
          <table data-testid="top-users">
            <thead>
              <tr>
                <th>user</th>
                <th>team</th>
                <th>cost</th>
                <th>share</th>
                <th>requests</th>
                <th>tokens</th>
              </tr>
            </thead>
            <tbody>
              {(top.data?.rows ?? []).map((r) => (
                <tr key={r.userId}>
                  <td>{r.email}</td>
                  <td>{r.team ?? '—'}</td>
                  <td>{usd(r.costUsd)}</td>
                  <td>
                    <Bar value={r.share} max={1} label={pct(r.share)} /> {pct(r.share)}
                  </td>
                  <td>{r.requests}</td>
                  <td>{tokens(r.tokens)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <ErrorNote error={top.error} />
        </Section>
      ) : null}
      <Section title="Live requests, tool calls and alerts">
        <LiveFeed rows={feed} />
      </Section>
    </div>
  );
}
