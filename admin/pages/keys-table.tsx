import type { KeyInfo } from '../../shared/identity';
import { api } from '../api';
import { when } from '../format';

function state(k: KeyInfo): string {
  if (k.revokedAt) return 'revoked';
  if (k.expiresAt && Date.parse(k.expiresAt) <= Date.now()) return 'expired';
  return 'active';
}

/** A user's keys with their last use; active ones can be revoked (effective on the key's next request). */
export function KeysTable({
  keys,
  onChange,
  currentKeyId,
}: {
  keys: KeyInfo[];
  onChange(): void;
  currentKeyId?: string;
}) {
  const revoke = async (k: KeyInfo): Promise<void> => {
    const warn = k.id === currentKeyId ? ' This is the key you signed in with: you will be signed out.' : '';
    if (!window.confirm(`Revoke key ${k.prefix}…?${warn}`)) return;
    try {
      await api('DELETE', `/api/v1/keys/${encodeURIComponent(k.id)}`);
    } catch (err) {
      window.alert(`The key was not revoked: ${(err as Error).message}`);
    }
    onChange();
  };
  return (
    <table class="keys">
      <thead>
        <tr>
          <th>key</th>
          <th>name</th>
          <th>created</th>
          <th>last used</th>
          <th>expires</th>
          <th>state</th>
          <th />
        </tr>
      </thead>
      <tbody>
        {keys.map((k) => (
          <tr key={k.id} data-key-id={k.id}>
            <td class="mono">{k.prefix}…</td>
            <td>{k.name ?? '—'}</td>
            <td>{when(k.createdAt)}</td>
            <td>{when(k.lastUsedAt)}</td>
            <td>{when(k.expiresAt)}</td>
            <td>{state(k)}</td>
            <td>
              {state(k) === 'active' ? (
                <button type="button" class="danger" onClick={() => revoke(k)}>
                  Revoke
                </button>
              ) : null}
            </td>
          </tr>
        ))}
        {keys.length === 0 ? (
          <tr>
            <td colSpan={7} class="muted">
              No keys.
            </td>
          </tr>
        ) : null}
      </tbody>
    </table>
  );
}
