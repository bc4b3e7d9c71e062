import { useState } from 'preact/hooks';
import type { Me } from '../../shared/identity';
import type { Interception, Page } from '../../shared/interception';
import { totalTokens } from '../../shared/usage';
import { api, query } from '../api';
import { pretty, tokens, usd, when } from '../format';
import { ErrorNote, Field, Section, useLoad } from '../ui';

interface Filter {
  user: string;
  team: string;
  model: string;
  client: string;
  session: string;
  tool: string;
  q: string;
}

const EMPTY: Filter = { user: '', team: '', model: '', client: '', session: '', tool: '', q: '' };

/** The record a row opened: prompt, usage, cost, tool calls; every string is rendered as text. */
function Detail({ id, onClose }: { id: string; onClose(): void }) {
  const rec = useLoad(
    () => api<Interception>('GET', `/api/v1/interceptions/${encodeURIComponent(id)}`),
    [id],
  );
  const r = rec.data;
  return (
    <aside class="detail card" data-testid="audit-detail">
      <header class="card-head">
        <h2>Interception</h2>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </header>
      <ErrorNote error={rec.error} />
      {r ? (
        <div>
          <dl class="facts">
            <dt>id</dt>
            <dd class="mono">{r.id}</dd>
            <dt>when</dt>
            <dd>
              {when(r.startedAt)} ({r.durationMs} ms)
            </dd>
            <dt>user</dt>
            <dd>
              {r.userEmail} {r.team ? `(${r.team})` : ''}
            </dd>
            <dt>model</dt>
            <dd>
              {r.provider} {r.api} {r.model ?? '—'}
            </dd>
            <dt>client</dt>
            <dd>
              {r.client}
              {r.sessionId ? `, session ${r.sessionId}` : ''}
            </dd>
            <dt>status</dt>
            <dd>
              {r.status} (HTTP {r.httpStatus}){r.error ? `: ${r.error.type} ${r.error.message}` : ''}
            </dd>
            <dt>usage</dt>
            <dd>
              input {r.usage.input}, output {r.usage.output}, cache read {r.usage.cacheRead}, cache write{' '}
              {r.usage.cacheWrite}, reasoning {r.usage.reasoning}
            </dd>
            <dt>cost</dt>
            <dd>{r.priceKnown ? usd(r.costUsd) : 'price unknown'}</dd>
          </dl>
          <h3>Prompt</h3>
          <pre class="prompt" data-testid="audit-prompt">
            {r.prompt ?? '(not captured)'}
          </pre>
          {r.output?.text ? (
            <>
              <h3>Output</h3>
              <pre class="prompt">{r.output.text}</pre>
            </>
          ) : null}
          <h3>Tool calls ({r.toolCalls.length})</h3>
          {r.toolCalls.map((c) => (
            <div class="tool-call" key={c.id} data-testid="audit-tool-call">
              <p>
                <strong>{c.name}</strong>
                {c.server ? ` on ${c.server}` : ''}
                {c.injected ? ' (run by the bridge)' : ''} at {when(c.at)}
                {c.execution ? `, ${c.execution.outcome} in ${c.execution.durationMs} ms` : ''}
              </p>
              <pre>{pretty(c.input)}</pre>
            </div>
          ))}
          {r.redactions.length > 0 ? (
            <p class="muted">
              Redacted: {r.redactions.map((x) => `${x.count} ${x.kind} in ${x.field}`).join('; ')}
            </p>
          ) : null}
        </div>
      ) : null}
    </aside>
  );
}

/** Search interceptions by user, team, model, client, session, tool and text; export what matches. */
export function AuditPage({ me }: { me: Me }) {
  const admin = me.user.role === 'admin';
  const [draft, setDraft] = useState<Filter>(EMPTY);
  const [applied, setApplied] = useState<Filter>(EMPTY);
  const [pages, setPages] = useState<Interception[][]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const first = useLoad(async () => {
    const p = await api<Page<Interception>>(
      'GET',
      `/api/v1/interceptions${query({ ...applied, limit: 50 })}`,
    );
    setPages([p.items]);
    setCursor(p.nextCursor);
    return p;
  }, [applied]);
  const more = async (): Promise<void> => {
    if (!cursor) return;
    try {
      const p = await api<Page<Interception>>(
        'GET',
        `/api/v1/interceptions${query({ ...applied, limit: 50, cursor })}`,
      );
      setPages((ps) => [...ps, p.items]);
      setCursor(p.nextCursor);
    } catch (err) {
      setError(err);
    }
  };
  const set = (k: keyof Filter) => (v: string) => setDraft({ ...draft, [k]: v });
  const rows = pages.flat();
  const exportHref = (format: 'jsonl' | 'csv'): string =>
    `/api/v1/audit/export${query({ ...applied, format })}`;
  return (
    <div class={open ? 'page audit with-detail' : 'page audit'}>
      <div>
        <Section
          title="Search"
          actions={
            <>
              <a class="button" href={exportHref('jsonl')} download data-testid="export-jsonl">
                Export JSONL
              </a>
              <a class="button" href={exportHref('csv')} download data-testid="export-csv">
                Export CSV
              </a>
            </>
          }
        >
          <form
            class="inline-form"
            data-testid="audit-search"
            onSubmit={(e) => {
              e.preventDefault();
              setApplied({ ...draft });
            }}
          >
            {admin ? <Field label="User" name="user" value={draft.user} onInput={set('user')} /> : null}
            {admin ? <Field label="Team" name="team" value={draft.team} onInput={set('team')} /> : null}
            <Field label="Model" name="model" value={draft.model} onInput={set('model')} />
            <Field label="Client" name="client" value={draft.client} onInput={set('client')} />
            <Field label="Session" name="session" value={draft.session} onInput={set('session')} />
            <Field label="Tool" name="tool" value={draft.tool} onInput={set('tool')} />
            <Field label="Text" name="q" value={draft.q} onInput={set('q')} />
            <button type="submit">Search</button>
          </form>
        </Section>
        <Section title={`Interceptions${first.loading ? ' (loading…)' : ''}`}>
          <table data-testid="audit-results" class="clickable">
            <thead>
              <tr>
                <th>time</th>
                <th>user</th>
                <th>model</th>
                <th>client</th>
                <th>tools</th>
                <th>tokens</th>
                <th>cost</th>
                <th>status</th>
                <th>prompt</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id} class={open === r.id ? 'selected' : undefined} onClick={() => setOpen(r.id)}>
                  <td>{when(r.startedAt)}</td>
                  <td>{r.userEmail}</td>
                  <td>{r.model ?? '—'}</td>
                  <td>{r.client}</td>
                  <td>{r.toolCalls.map((c) => c.name).join(', ')}</td>
                  <td>{tokens(totalTokens(r.usage))}</td>
                  <td>{r.priceKnown ? usd(r.costUsd) : 'unknown'}</td>
                  <td>{r.status}</td>
                  <td class="clip">{r.prompt ?? ''}</td>
                </tr>
              ))}
              {!first.loading && rows.length === 0 ? (
                <tr>
                  <td colSpan={9} class="muted">
                    Nothing matches.
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
          {cursor ? (
            <button type="button" onClick={more}>
              Load more
            </button>
          ) : null}
          <ErrorNote error={first.error ?? error} />
        </Section>
      </div>
      {open ? <Detail id={open} onClose={() => setOpen(null)} /> : null}
    </div>
  );
}
