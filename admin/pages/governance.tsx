import { useState } from 'preact/hooks';
import type { CacheBreakCause } from '../../shared/interception';
import type { ToolPolicyDoc, ToolPolicyDryRun, ToolPolicyRule } from '../../shared/tool-policy';
import { api, query } from '../api';
import { usd, when } from '../format';
import { ErrorNote, Section, Select, useLoad } from '../ui';

/** `GET /api/v1/cache-breaks` (docs/governance.md#prompt-cache-breaks). */
interface CacheBreakRow {
  key: string;
  breaks: number;
  cacheBreakExcessUsd: number;
  unpricedBreaks: number;
  byCause: Record<CacheBreakCause, number>;
}
interface CacheBreakReport {
  rows: CacheBreakRow[];
  totals: CacheBreakRow;
}

type GroupBy = 'team' | 'user';
const GROUPS: readonly GroupBy[] = ['team', 'user'];

function causes(r: CacheBreakRow): string {
  return (Object.entries(r.byCause) as [CacheBreakCause, number][])
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([c, n]) => `${c.replace('_', ' ')} ${n}`)
    .join(', ');
}

/** Excess spend from prompt-cache breaks this month, per team or user, the costliest first. */
function CacheBreaks() {
  const [groupBy, setGroupBy] = useState<GroupBy>('team');
  const report = useLoad(
    () => api<CacheBreakReport>('GET', `/api/v1/cache-breaks${query({ period: 'month', groupBy })}`),
    [groupBy],
  );
  const t = report.data?.totals;
  return (
    <Section
      title="Excess spend from cache breaks this month"
      actions={
        <Select<GroupBy>
          label="By"
          name="cache-group"
          value={groupBy}
          options={GROUPS}
          onChange={setGroupBy}
        />
      }
    >
      {t ? (
        <p data-testid="cache-break-total">
          {t.breaks} breaks · {usd(t.cacheBreakExcessUsd)} over cached turns
          {t.unpricedBreaks > 0 ? ` (${t.unpricedBreaks} at an unknown price)` : ''}
        </p>
      ) : null}
      <table data-testid="cache-breaks">
        <thead>
          <tr>
            <th>{groupBy}</th>
            <th>breaks</th>
            <th>excess</th>
            <th>causes</th>
          </tr>
        </thead>
        <tbody>
          {(report.data?.rows ?? []).map((r) => (
            <tr key={r.key}>
              <td>{r.key}</td>
              <td>{r.breaks}</td>
              <td>{usd(r.cacheBreakExcessUsd)}</td>
              <td>{causes(r)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <ErrorNote error={report.error} />
    </Section>
  );
}

function rulesText(rules: readonly ToolPolicyRule[]): string {
  return JSON.stringify({ rules }, null, 2);
}

/** The rule set as JSON, checked by the bridge on save; a dry run shows what it would have done. */
function ToolPolicy() {
  const current = useLoad(() => api<ToolPolicyDoc>('GET', '/api/v1/tool-policy'), []);
  const [text, setText] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState('');
  const [dry, setDry] = useState<ToolPolicyDryRun | null>(null);
  const shown = text ?? (current.data ? rulesText(current.data.rules) : '');

  function parsed(): ToolPolicyRule[] | undefined {
    try {
      const v = JSON.parse(shown) as { rules?: ToolPolicyRule[] };
      return Array.isArray(v.rules) ? v.rules : undefined;
    } catch (e) {
      setError(new Error(`Not valid JSON: ${(e as Error).message}`));
      return undefined;
    }
  }
  async function run(step: () => Promise<void>): Promise<void> {
    setError(null);
    setSaved('');
    try {
      await step();
    } catch (e) {
      setError(e);
    }
  }
  const examples = () =>
    run(async () => {
      const ex = await api<{ rules: ToolPolicyRule[] }>('GET', '/api/v1/tool-policy/examples');
      setText(rulesText(ex.rules));
    });
  const dryRun = () =>
    run(async () => {
      const rules = parsed();
      if (rules)
        setDry(await api<ToolPolicyDryRun>('POST', '/api/v1/tool-policy/dry-run', { rules, days: 7 }));
    });
  const save = () =>
    run(async () => {
      const rules = parsed();
      if (!rules) return;
      const doc = await api<ToolPolicyDoc>('PUT', '/api/v1/tool-policy', { rules });
      setText(rulesText(doc.rules));
      setSaved(`Saved ${doc.rules.length} rules.`);
      current.reload();
    });

  return (
    <Section
      title="Tool-call policy"
      actions={
        <>
          <button type="button" onClick={examples}>
            Load examples
          </button>
          <button type="button" onClick={dryRun} data-testid="policy-dry-run">
            Dry run (7 days)
          </button>
          <button type="button" onClick={save} data-testid="policy-save">
            Save
          </button>
        </>
      }
    >
      <p class="muted">
        Rules over the tool calls models ask agents to run: <code>deny</code> replaces the call with a
        message, <code>audit</code> lets it through, flagged. See docs/governance.md.
      </p>
      <textarea
        name="tool-policy"
        rows={16}
        spellcheck={false}
        value={shown}
        onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
      />
      <ErrorNote error={error ?? current.error} />
      {saved ? <p role="status">{saved}</p> : null}
      {dry ? (
        <div data-testid="dry-run">
          <p>
            Over {dry.days} days: {dry.calls} tool calls in {dry.scanned} requests; would deny {dry.denied},
            flag {dry.flagged}
            {dry.truncated ? ' (first hits shown)' : ''}.
          </p>
          <table>
            <thead>
              <tr>
                <th>when</th>
                <th>user</th>
                <th>tool</th>
                <th>rule</th>
                <th>action</th>
                <th>call</th>
              </tr>
            </thead>
            <tbody>
              {dry.items.map((h) => (
                <tr key={`${h.interceptionId}-${h.rule}-${h.at}`}>
                  <td>{when(h.at)}</td>
                  <td>{h.userEmail}</td>
                  <td>{h.tool}</td>
                  <td>{h.rule}</td>
                  <td>{h.action}</td>
                  <td>
                    <code>{h.summary}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </Section>
  );
}

/** What agents do: the tool-call policy, and what prompt-cache breaks cost. */
export function GovernancePage() {
  return (
    <div class="page governance">
      <ToolPolicy />
      <CacheBreaks />
    </div>
  );
}
