import { api } from '../api';
import { tokens, usd, when } from '../format';
import { ErrorNote, Section, useLoad } from '../ui';

interface AgentSession {
  sessionId: string;
  userEmail: string;
  client: string;
  requests: number;
  toolCalls: number;
  tokens: number;
  costUsd: number;
  firstAt: string;
  lastAt: string;
  models: string[];
}

/** Agent sessions (Claude Code, Codex): members see their own, admins everyone's. */
export function SessionsPage() {
  const sessions = useLoad(() => api<{ items: AgentSession[] }>('GET', '/api/v1/sessions?limit=200'), []);
  return (
    <div class="page sessions">
      <Section title="Agent sessions">
        <table data-testid="sessions">
          <thead>
            <tr>
              <th>session</th>
              <th>user</th>
              <th>client</th>
              <th>models</th>
              <th>requests</th>
              <th>tool calls</th>
              <th>tokens</th>
              <th>cost</th>
              <th>first</th>
              <th>last</th>
            </tr>
          </thead>
          <tbody>
            {(sessions.data?.items ?? []).map((s) => (
              <tr key={`${s.userEmail}:${s.sessionId}`}>
                <td class="mono clip">{s.sessionId}</td>
                <td>{s.userEmail}</td>
                <td>{s.client}</td>
                <td>{s.models.join(', ')}</td>
                <td>{s.requests}</td>
                <td>{s.toolCalls}</td>
                <td>{tokens(s.tokens)}</td>
                <td>{usd(s.costUsd)}</td>
                <td>{when(s.firstAt)}</td>
                <td>{when(s.lastAt)}</td>
              </tr>
            ))}
            {sessions.data?.items.length === 0 ? (
              <tr>
                <td colSpan={10} class="muted">
                  No agent sessions yet (requests without a session id are in Audit).
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
        <ErrorNote error={sessions.error} />
      </Section>
    </div>
  );
}
