import { useState } from 'preact/hooks';
import type { SessionInfo } from '../../shared/admin';
import { api } from '../api';
import { ErrorNote } from '../ui';

/**
 * The key is held only while the request is in flight: the bridge answers with an HttpOnly cookie
 * the page cannot read, and the field is cleared whatever happens.
 */
export function SignIn({ onSignedIn }: { onSignedIn(s: SessionInfo): void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    const k = key.trim();
    setKey('');
    try {
      onSignedIn(await api<SessionInfo>('POST', '/api/v1/session', { key: k }));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="sign-in">
      <form class="card" onSubmit={submit}>
        <h1>AI Bridge</h1>
        <p>Sign in with your bridge key. Admins see the whole organisation; members see their own usage.</p>
        <label class="field">
          <span>Bridge key</span>
          <input
            name="key"
            type="password"
            autocomplete="off"
            placeholder="aib_…"
            value={key}
            required
            onInput={(ev) => setKey((ev.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <ErrorNote error={error} />
      </form>
    </main>
  );
}
