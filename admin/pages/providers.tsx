import { useState } from 'preact/hooks';
import { ApiError, api } from '../api';
import { when } from '../format';
import { ErrorNote, Field, Section, useLoad } from '../ui';

/** A pool key as `GET /api/v1/providers/:instance/keys` shows it (docs/routing.md#key-pools): never the secret. */
interface ProviderKey {
  name: string;
  source: 'file' | 'api';
  weight: number;
  rpm: number | null;
  tpm: number | null;
  state: 'active' | 'cooling' | 'disabled' | 'auth_failed' | 'unreadable';
  cooldownUntil: string | null;
  requests: number;
  rateLimited: number;
  authFailures: number;
}

/** One instance's pool; null: its family takes no keys (Bedrock). */
async function poolOf(instance: string): Promise<ProviderKey[] | null> {
  try {
    return (await api<{ items: ProviderKey[] }>('GET', `/api/v1/providers/${instance}/keys`)).items;
  } catch (err) {
    if (err instanceof ApiError && err.code === 'invalid_provider_key') return null;
    throw err;
  }
}

function AddKey({ instance, onSaved }: { instance: string; onSaved(): void }) {
  const [name, setName] = useState('');
  const [key, setKey] = useState('');
  const [weight, setWeight] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setError(undefined);
    try {
      await api('POST', `/api/v1/providers/${instance}/keys`, {
        name,
        key,
        ...(weight ? { weight: Number(weight) } : {}),
      });
      setName('');
      setKey('');
      setWeight('');
      onSaved();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="inline-form" onSubmit={submit} data-testid={`add-key-${instance}`}>
      <Field label="Name" name="name" value={name} onInput={setName} required />
      <Field label="Key" name="key" type="password" value={key} onInput={setKey} required />
      <Field label="Weight" name="weight" type="number" value={weight} onInput={setWeight} />
      <button type="submit">Add key</button>
      <ErrorNote error={error} />
    </form>
  );
}

function Pool({ instance }: { instance: string }) {
  const pool = useLoad(() => poolOf(instance), [instance]);
  const [error, setError] = useState<unknown>(undefined);
  const act = async (method: 'PATCH' | 'DELETE', name: string, body?: unknown): Promise<void> => {
    if (method === 'DELETE' && !window.confirm(`Remove the key ${name} of ${instance}?`)) return;
    setError(undefined);
    try {
      await api(method, `/api/v1/providers/${instance}/keys/${name}`, body);
      pool.reload();
    } catch (err) {
      setError(err);
    }
  };
  if (pool.data === null) return null;
  return (
    <Section
      title={`Keys of ${instance}`}
      actions={
        <button type="button" onClick={pool.reload}>
          Refresh
        </button>
      }
    >
      <table data-testid={`keys-${instance}`}>
        <thead>
          <tr>
            <th>key</th>
            <th>from</th>
            <th>weight</th>
            <th>rpm / tpm</th>
            <th>state</th>
            <th>requests</th>
            <th>429/529</th>
            <th>401/403</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(pool.data ?? []).map((k) => (
            <tr key={k.name}>
              <td>{k.name}</td>
              <td>{k.source}</td>
              <td>{k.weight}</td>
              <td>
                {k.rpm ?? '—'} / {k.tpm ?? '—'}
              </td>
              <td class={`state-${k.state}`}>
                {k.state}
                {k.cooldownUntil ? ` until ${when(k.cooldownUntil)}` : ''}
              </td>
              <td>{k.requests}</td>
              <td>{k.rateLimited}</td>
              <td>{k.authFailures}</td>
              <td>
                {/* Sealed under another credentials key: nothing to change, only to remove. */}
                {k.state === 'unreadable' ? null : k.state === 'disabled' || k.state === 'auth_failed' ? (
                  <button type="button" onClick={() => act('PATCH', k.name, { disabled: false })}>
                    Enable
                  </button>
                ) : (
                  <button type="button" onClick={() => act('PATCH', k.name, { disabled: true })}>
                    Disable
                  </button>
                )}
                {k.source === 'api' ? (
                  <button type="button" class="danger" onClick={() => act('DELETE', k.name)}>
                    Remove
                  </button>
                ) : null}
              </td>
            </tr>
          ))}
          {pool.data?.length === 0 ? (
            <tr>
              <td colSpan={9} class="muted">
                A single key (its own apiKey); adding one makes a pool (docs/routing.md).
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
      <AddKey instance={instance} onSaved={pool.reload} />
      <ErrorNote error={pool.error ?? error} />
    </Section>
  );
}

/** Admins: each provider instance's key pool, with add, disable and remove. */
export function ProvidersPage() {
  const health = useLoad(
    () => api<{ upstreams?: Record<string, { configured: boolean }> }>('GET', '/healthz'),
    [],
  );
  return (
    <div class="page providers">
      {Object.keys(health.data?.upstreams ?? {}).map((instance) => (
        <Pool key={instance} instance={instance} />
      ))}
      <ErrorNote error={health.error} />
    </div>
  );
}
