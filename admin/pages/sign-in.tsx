import { useEffect, useState } from 'preact/hooks';
import type { SessionInfo } from '../../shared/admin';
import type { AuthConfig } from '../../shared/sso';
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
  // Until the bridge says otherwise, the key form (every bridge has it unless switched off).
  const [auth, setAuth] = useState<AuthConfig>({ sso: null, keySignIn: true });
  useEffect(() => {
    api<AuthConfig>('GET', '/api/v1/auth/config').then(setAuth, () => undefined);
  }, []);
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
  // Back here after SSO, the page lands on the admin page itself (the hash keeps the page asked for).
  const ssoHref = auth.sso
    ? `${auth.sso.loginUrl}?returnTo=${encodeURIComponent(location.pathname + location.hash)}`
    : undefined;
  return (
    <main class="sign-in">
      <div class="card">
        <h1>AI Bridge</h1>
        {auth.sso && (
          <p>
            <a class="button sso" href={ssoHref} data-testid="sso-sign-in">
              Sign in with {auth.sso.displayName}
            </a>
          </p>
        )}
        {auth.keySignIn && (
          <form onSubmit={submit}>
            <p>
              {auth.sso ? 'Or sign in with your bridge key. ' : 'Sign in with your bridge key. '}
              Admins see the whole organisation; members see their own usage.
            </p>
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
        )}
      </div>
    </main>
  );
}
