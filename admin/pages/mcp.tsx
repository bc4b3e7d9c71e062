import { useState } from 'preact/hooks';
import type { ModelPriceOverride, PriceValue, UnknownModel } from '../../shared/spend';
import { api } from '../api';
import { when } from '../format';
import { ErrorNote, Field, Section, useLoad } from '../ui';

/** What GET /api/v1/mcp/servers says of a server (server/mcp/hub.ts), as far as the page shows it. */
interface McpServer {
  name: string;
  transport?: { type?: string; url?: string; command?: string };
  status?: {
    state?: string;
    error?: string | null;
    tools?: string[];
    refreshedAt?: string | null;
    users?: number;
    ready?: number;
  };
}

function price(v: PriceValue | undefined): string {
  if (v === undefined) return '—';
  return typeof v === 'number' ? `$${v}` : `$${v.base} (tiered)`;
}

function PriceForm({
  model,
  setModel,
  onSaved,
}: {
  model: string;
  setModel(m: string): void;
  onSaved(): void;
}) {
  const [input, setInput] = useState('');
  const [output, setOutput] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setError(undefined);
    try {
      await api('PUT', `/api/v1/prices/${encodeURIComponent(model)}`, {
        input_mtok: Number(input),
        output_mtok: Number(output),
      });
      setModel('');
      setInput('');
      setOutput('');
      onSaved();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="inline-form" onSubmit={submit} data-testid="price-form">
      <Field label="Model" name="model" value={model} onInput={setModel} required />
      <Field label="Input $/Mtok" name="input_mtok" type="number" value={input} onInput={setInput} required />
      <Field
        label="Output $/Mtok"
        name="output_mtok"
        type="number"
        value={output}
        onInput={setOutput}
        required
      />
      <button type="submit">Set price</button>
      <ErrorNote error={error} />
    </form>
  );
}

/** Admins: MCP servers with their state and tools; models without a price, and the admin's overrides. */
export function McpPage() {
  const servers = useLoad(() => api<{ items: McpServer[] }>('GET', '/api/v1/mcp/servers'), []);
  const unknown = useLoad(() => api<{ items: UnknownModel[] }>('GET', '/api/v1/prices/unknown'), []);
  const prices = useLoad(
    () => api<{ source: string; overrides: ModelPriceOverride[] }>('GET', '/api/v1/prices'),
    [],
  );
  const [model, setModel] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const reloadPrices = (): void => {
    prices.reload();
    unknown.reload();
  };
  const remove = async (m: string): Promise<void> => {
    if (!window.confirm(`Remove the price override for ${m}?`)) return;
    try {
      await api('DELETE', `/api/v1/prices/${encodeURIComponent(m)}`);
      reloadPrices();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <div class="page mcp">
      <Section
        title="MCP servers"
        actions={
          <button type="button" onClick={servers.reload}>
            Refresh
          </button>
        }
      >
        <table data-testid="mcp-servers">
          <thead>
            <tr>
              <th>server</th>
              <th>transport</th>
              <th>state</th>
              <th>tools</th>
              <th>refreshed</th>
            </tr>
          </thead>
          <tbody>
            {(servers.data?.items ?? []).map((s) => (
              <tr key={s.name}>
                <td>{s.name}</td>
                <td>{s.transport?.type ?? '—'}</td>
                <td class={`state-${s.status?.state ?? 'unknown'}`}>
                  {s.status?.state ?? 'unknown'}
                  {s.status?.error ? `: ${s.status.error}` : ''}
                </td>
                <td>{(s.status?.tools ?? []).join(', ') || '—'}</td>
                <td>{when(s.status?.refreshedAt)}</td>
              </tr>
            ))}
            {servers.data?.items.length === 0 ? (
              <tr>
                <td colSpan={5} class="muted">
                  No MCP servers (docs/mcp.md).
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
        <ErrorNote error={servers.error} />
      </Section>
      <Section title="Models with unknown prices">
        <table data-testid="unknown-prices">
          <thead>
            <tr>
              <th>model</th>
              <th>provider</th>
              <th>requests</th>
              <th>first seen</th>
              <th>last seen</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(unknown.data?.items ?? []).map((u) => (
              <tr key={`${u.provider}:${u.model}`}>
                <td>{u.model}</td>
                <td>{u.provider}</td>
                <td>{u.requests}</td>
                <td>{when(u.firstSeen)}</td>
                <td>{when(u.lastSeen)}</td>
                <td>
                  <button type="button" onClick={() => setModel(u.model)}>
                    Set price
                  </button>
                </td>
              </tr>
            ))}
            {unknown.data?.items.length === 0 ? (
              <tr>
                <td colSpan={6} class="muted">
                  Every model seen has a price.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
        <ErrorNote error={unknown.error} />
      </Section>
      <Section title={`Price overrides${prices.data ? ` (bundled prices: ${prices.data.source})` : ''}`}>
        <PriceForm model={model} setModel={setModel} onSaved={reloadPrices} />
        <table data-testid="price-overrides">
          <thead>
            <tr>
              <th>model</th>
              <th>provider</th>
              <th>input / Mtok</th>
              <th>output / Mtok</th>
              <th>cache read</th>
              <th>cache write</th>
              <th>updated</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(prices.data?.overrides ?? []).map((o) => (
              <tr key={o.model}>
                <td>{o.model}</td>
                <td>{o.provider ?? 'any'}</td>
                <td>{price(o.input_mtok)}</td>
                <td>{price(o.output_mtok)}</td>
                <td>{price(o.cache_read_mtok)}</td>
                <td>{price(o.cache_write_mtok)}</td>
                <td>{when(o.updatedAt)}</td>
                <td>
                  <button type="button" class="danger" onClick={() => remove(o.model)}>
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <ErrorNote error={prices.error ?? error} />
      </Section>
    </div>
  );
}
