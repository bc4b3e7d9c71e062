import { useState } from 'preact/hooks';
import type { Alert, AnyBudgetStatus, BudgetAction, BudgetScope, Period } from '../../shared/spend';
import { periodly } from '../../shared/spend';
import { api } from '../api';
import { tokens, usd, when } from '../format';
import { Bar, ErrorNote, Field, Section, Select, useLoad } from '../ui';

type Budget = AnyBudgetStatus & { label: string };
/** `session`: a cap on one agent session's cost (docs/spend.md), for every session or a user's or team's. */
type Scope = BudgetScope | 'session';

const SCOPES = ['org', 'team', 'user', 'session'] as const;
const PERIODS = ['day', 'week', 'month'] as const;
const ACTIONS = ['alert', 'block'] as const;

interface Draft {
  scope: Scope;
  subject: string;
  period: Period;
  limitUsd: string;
  action: BudgetAction;
  thresholds: string;
}

const EMPTY: Draft = {
  scope: 'org',
  subject: '',
  period: 'month',
  limitUsd: '',
  action: 'alert',
  thresholds: '',
};

function draftOf(b: Budget): Draft {
  return {
    scope: b.scope,
    subject: b.scope === 'org' || (b.scope === 'session' && b.subject === '*') ? '' : b.label,
    period: b.period === 'session' ? 'month' : b.period,
    limitUsd: String(b.limitUsd),
    action: b.action,
    thresholds: b.thresholds.join(', '),
  };
}

/** Budgets are keyed by scope, subject and period: saving one that exists replaces it (that is the edit). */
function BudgetForm({
  draft,
  setDraft,
  onSaved,
}: {
  draft: Draft;
  setDraft(d: Draft): void;
  onSaved(): void;
}) {
  const [error, setError] = useState<unknown>(undefined);
  const set =
    <K extends keyof Draft>(k: K) =>
    (v: Draft[K]) =>
      setDraft({ ...draft, [k]: v });
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setError(undefined);
    const thresholds = draft.thresholds
      .split(/[\s,]+/)
      .filter(Boolean)
      .map(Number);
    try {
      await api('PUT', '/api/v1/budgets', {
        scope: draft.scope,
        ...(draft.scope !== 'org' && draft.subject.trim() !== '' ? { subject: draft.subject.trim() } : {}),
        ...(draft.scope === 'session' ? {} : { period: draft.period }),
        limitUsd: Number(draft.limitUsd),
        action: draft.action,
        ...(thresholds.length > 0 ? { thresholds } : {}),
      });
      setDraft(EMPTY);
      onSaved();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="inline-form" onSubmit={submit} data-testid="budget-form">
      <Select label="Scope" name="scope" value={draft.scope} options={SCOPES} onChange={set('scope')} />
      {draft.scope === 'session' ? (
        <Field
          label="User email or team (blank: every session)"
          name="subject"
          value={draft.subject}
          onInput={set('subject')}
        />
      ) : draft.scope !== 'org' ? (
        <Field
          label={draft.scope === 'user' ? 'User email' : 'Team'}
          name="subject"
          value={draft.subject}
          onInput={set('subject')}
          required
        />
      ) : null}
      {draft.scope === 'session' ? null : (
        <Select
          label="Period"
          name="period"
          value={draft.period}
          options={PERIODS}
          onChange={set('period')}
        />
      )}
      <Field
        label="Limit (USD)"
        name="limitUsd"
        type="number"
        value={draft.limitUsd}
        onInput={set('limitUsd')}
        required
      />
      <Select label="Action" name="action" value={draft.action} options={ACTIONS} onChange={set('action')} />
      <Field
        label="Alert at (fractions)"
        name="thresholds"
        value={draft.thresholds}
        onInput={set('thresholds')}
        placeholder="0.5, 0.8, 1"
      />
      <button type="submit">Save budget</button>
      <ErrorNote error={error} />
    </form>
  );
}

/** Admins: budgets with where each stands, and every alert with the rule, observed value and baseline. */
export function BudgetsPage({ ended }: { ended: number }) {
  const budgets = useLoad(() => api<{ items: Budget[] }>('GET', '/api/v1/budgets'), [ended]);
  const alerts = useLoad(() => api<{ items: Alert[] }>('GET', '/api/v1/alerts?limit=200'), [ended]);
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [error, setError] = useState<unknown>(undefined);
  const remove = async (b: Budget): Promise<void> => {
    const what = b.period === 'session' ? 'session cap' : `${periodly(b.period)} ${b.scope} budget`;
    if (!window.confirm(`Delete the ${what} for ${b.label}?`)) return;
    try {
      await api('DELETE', `/api/v1/budgets/${encodeURIComponent(b.id)}`);
      budgets.reload();
    } catch (err) {
      setError(err);
    }
  };
  const value = (a: Alert, v: number): string =>
    a.unit === 'usd' ? usd(v) : a.unit === 'tokens' ? tokens(v) : `${v} requests`;
  return (
    <div class="page budgets">
      <Section title="Budget">
        <BudgetForm draft={draft} setDraft={setDraft} onSaved={budgets.reload} />
      </Section>
      <Section title="Budgets">
        <table data-testid="budgets">
          <thead>
            <tr>
              <th>scope</th>
              <th>subject</th>
              <th>period</th>
              <th>spent</th>
              <th>limit</th>
              <th>progress</th>
              <th>action</th>
              <th>resets</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(budgets.data?.items ?? []).map((b) => (
              <tr key={b.id} data-budget={`${b.scope}:${b.label}:${b.period}`}>
                <td>{b.scope}</td>
                <td>{b.label}</td>
                <td>{b.period}</td>
                <td>
                  {usd(b.spentUsd)}
                  {b.reservedUsd > 0 ? ` (+${usd(b.reservedUsd)} running)` : ''}
                </td>
                <td>{usd(b.limitUsd)}</td>
                <td>
                  <Bar
                    value={b.spentUsd}
                    max={b.limitUsd}
                    label={`${usd(b.spentUsd)} of ${usd(b.limitUsd)}`}
                  />
                </td>
                <td>{b.action}</td>
                <td>{when(b.resetsAt)}</td>
                <td class="actions">
                  <button type="button" onClick={() => setDraft(draftOf(b))}>
                    Edit
                  </button>
                  <button type="button" class="danger" onClick={() => remove(b)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
            {budgets.data?.items.length === 0 ? (
              <tr>
                <td colSpan={9} class="muted">
                  No budgets yet.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
        <ErrorNote error={budgets.error ?? error} />
      </Section>
      <Section title="Alerts">
        <table data-testid="alerts">
          <thead>
            <tr>
              <th>time</th>
              <th>kind</th>
              <th>rule</th>
              <th>who</th>
              <th>observed</th>
              <th>baseline</th>
              <th>message</th>
            </tr>
          </thead>
          <tbody>
            {(alerts.data?.items ?? []).map((a) => (
              <tr key={a.id}>
                <td>{when(a.at)}</td>
                <td>{a.kind}</td>
                <td class="mono">{a.rule}</td>
                <td>{a.userEmail ?? a.team ?? 'org'}</td>
                <td>{value(a, a.observed)}</td>
                <td>{value(a, a.baseline)}</td>
                <td>{a.message}</td>
              </tr>
            ))}
            {alerts.data?.items.length === 0 ? (
              <tr>
                <td colSpan={7} class="muted">
                  No alerts.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
        <ErrorNote error={alerts.error} />
      </Section>
    </div>
  );
}
