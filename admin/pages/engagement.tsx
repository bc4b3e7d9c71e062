import { useState } from 'preact/hooks';
import type { EngagementReport, EngagementRow, EngagementSort, SortOrder } from '../../shared/engagement';
import { ENGAGEMENT_SORTS } from '../../shared/engagement';
import type { Period } from '../../shared/spend';
import { api, query } from '../api';
import { tokens, usd, when } from '../format';
import { ErrorNote, Section, Select, useLoad } from '../ui';

const PERIODS: readonly Period[] = ['day', 'week', 'month'];
const ORDERS: readonly SortOrder[] = ['desc', 'asc'];
/** How many users each side of a team's ranking shows. */
const SHOWN = 3;
const NO_TEAM = '(no team)';

/** More active days first, then more requests, then more spend: regular use outranks one big day. */
function byEngagement(a: EngagementRow, b: EngagementRow): number {
  return (
    b.activeDays - a.activeDays ||
    b.requests - a.requests ||
    b.costUsd - a.costUsd ||
    a.email.localeCompare(b.email)
  );
}

export interface TeamEngagement {
  team: string;
  /** The most engaged first. */
  most: EngagementRow[];
  /** The least engaged first; only users who used the bridge at some point. */
  least: EngagementRow[];
  /** Provisioned and never made a request, oldest account first. */
  neverUsed: EngagementRow[];
}

/**
 * Splits each team's users into its most and least engaged (each side at most SHOWN, never the
 * same user on both) and those who never used the bridge.
 */
export function byTeam(rows: readonly EngagementRow[]): TeamEngagement[] {
  const teams = new Map<string, EngagementRow[]>();
  for (const r of rows) {
    const t = r.team ?? NO_TEAM;
    teams.set(t, [...(teams.get(t) ?? []), r]);
  }
  return [...teams]
    .sort(([a], [b]) => (a === NO_TEAM ? 1 : b === NO_TEAM ? -1 : a.localeCompare(b)))
    .map(([team, members]) => {
      const used = members.filter((m) => m.lastUsedAt !== null).sort(byEngagement);
      const top = Math.min(SHOWN, Math.ceil(used.length / 2));
      return {
        team,
        most: used.slice(0, top),
        least: used.slice(top).reverse().slice(0, SHOWN),
        neverUsed: members
          .filter((m) => m.lastUsedAt === null)
          .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.email.localeCompare(b.email)),
      };
    });
}

function Ranked({ rows, testId, empty }: { rows: EngagementRow[]; testId: string; empty: string }) {
  if (rows.length === 0) return <p class="muted">{empty}</p>;
  return (
    <table data-testid={testId}>
      <thead>
        <tr>
          <th>user</th>
          <th>active days</th>
          <th>requests</th>
          <th>cost</th>
          <th>last used</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr key={r.userId}>
            <td>{r.email}</td>
            <td>{r.activeDays}</td>
            <td>{r.requests}</td>
            <td>
              {usd(r.costUsd)}
              {r.unpricedRequests > 0 ? ` + ${r.unpricedRequests} unpriced` : ''}
            </td>
            <td>{when(r.lastUsedAt)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function TeamCard({ t }: { t: TeamEngagement }) {
  return (
    <section class="card" data-testid="engagement-team" data-team={t.team}>
      <header class="card-head">
        <h2>{t.team}</h2>
      </header>
      <h3>Most engaged</h3>
      <Ranked rows={t.most} testId="most-engaged" empty="Nobody in this team used the bridge yet." />
      <h3>Least engaged</h3>
      <Ranked rows={t.least} testId="least-engaged" empty="No one else to compare." />
      <h3>Provisioned, never used</h3>
      {t.neverUsed.length === 0 ? (
        <p class="muted">Everyone has used the bridge.</p>
      ) : (
        <ul class="never-used" data-testid="never-used">
          {t.neverUsed.map((r) => (
            <li key={r.userId}>
              {r.email} <span class="muted">since {when(r.createdAt)}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/** Power users and least engaged users per team (docs/admin.md), from `GET /api/v1/usage/users`. */
export function EngagementPage() {
  const [period, setPeriod] = useState<Period>('month');
  const [sort, setSort] = useState<EngagementSort>('activeDays');
  const [order, setOrder] = useState<SortOrder>('desc');
  const report = useLoad(
    () => api<EngagementReport>('GET', `/api/v1/usage/users${query({ period, sort, order })}`),
    [period, sort, order],
  );
  const csvHref = `/api/v1/usage/users${query({ period, sort, order, format: 'csv' })}`;
  const rows = report.data?.rows ?? [];
  return (
    <div class="page engagement">
      <Section
        title={`Engagement this ${period}`}
        actions={
          <>
            <Select<Period>
              label="Period"
              name="period"
              value={period}
              options={PERIODS}
              onChange={setPeriod}
            />
            <a class="button" href={csvHref} download data-testid="engagement-csv">
              Export CSV
            </a>
          </>
        }
      >
        <p class="muted">
          {report.data
            ? `${rows.length} users, ${rows.filter((r) => r.requests > 0).length} active from ${when(report.data.since)} to ${when(report.data.until)} (UTC); ${rows.filter((r) => r.lastUsedAt === null).length} never used the bridge.`
            : 'Loading…'}
        </p>
        <ErrorNote error={report.error} />
      </Section>
      <div class="team-grid">
        {byTeam(rows).map((t) => (
          <TeamCard key={t.team} t={t} />
        ))}
      </div>
      <Section
        title="Every user"
        actions={
          <>
            <Select<EngagementSort>
              label="Sort by"
              name="sort"
              value={sort}
              options={ENGAGEMENT_SORTS}
              onChange={setSort}
            />
            <Select<SortOrder>
              label="Order"
              name="order"
              value={order}
              options={ORDERS}
              onChange={setOrder}
            />
          </>
        }
      >
        <table data-testid="engagement-users">
          <thead>
            <tr>
              <th>user</th>
              <th>team</th>
              <th>role</th>
              <th>requests</th>
              <th>tokens</th>
              <th>cost</th>
              <th>active days</th>
              <th>last used</th>
              <th>created</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.userId}>
                <td>{r.email}</td>
                <td>{r.team ?? '—'}</td>
                <td>{r.role}</td>
                <td>{r.requests}</td>
                <td>{tokens(r.tokens.total)}</td>
                <td>
                  {usd(r.costUsd)}
                  {r.unpricedRequests > 0 ? ` + ${r.unpricedRequests} unpriced` : ''}
                </td>
                <td>{r.activeDays}</td>
                <td>{when(r.lastUsedAt)}</td>
                <td>{when(r.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </div>
  );
}
