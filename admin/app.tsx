import { useEffect, useMemo, useState } from 'preact/hooks';
import type { SessionInfo } from '../shared/admin';
import type { Me } from '../shared/identity';
import type { BridgeEvent } from '../shared/protocol';
import { api, onSignedOut } from './api';
import { type FeedRow, feedRowOf } from './feed';
import { LiveConnection, type LiveState } from './live';
import { AuditPage } from './pages/audit';
import { BudgetsPage } from './pages/budgets';
import { EngagementPage } from './pages/engagement';
import { GovernancePage } from './pages/governance';
import { KeysPage } from './pages/keys';
import { McpPage } from './pages/mcp';
import { OverviewPage } from './pages/overview';
import { ProvidersPage } from './pages/providers';
import { SessionsPage } from './pages/sessions';
import { SignIn } from './pages/sign-in';
import { UsersPage } from './pages/users';

interface Route {
  id: string;
  title: string;
  admin: boolean | null;
}

/** Pages by hash; `admin: null` for everyone, true for admins only, false for members only. */
const ROUTES: Route[] = [
  { id: 'overview', title: 'Overview', admin: null },
  { id: 'users', title: 'Users & keys', admin: true },
  { id: 'keys', title: 'My keys', admin: false },
  { id: 'engagement', title: 'Engagement', admin: true },
  { id: 'budgets', title: 'Budgets & alerts', admin: true },
  { id: 'governance', title: 'Governance', admin: true },
  { id: 'audit', title: 'Audit', admin: null },
  { id: 'sessions', title: 'Sessions', admin: null },
  { id: 'mcp', title: 'MCP & prices', admin: true },
  { id: 'providers', title: 'Provider keys', admin: true },
];

const FEED_ROWS = 100;

function currentHash(): string {
  return location.hash.replace(/^#\/?/, '') || 'overview';
}

export function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [page, setPage] = useState(currentHash());
  const [feed, setFeed] = useState<FeedRow[]>([]);
  const [liveState, setLiveState] = useState<LiveState>('stopped');
  /** Bumped when a request ends, so pages showing spend reload. */
  const [ended, setEnded] = useState(0);

  useEffect(() => {
    // Signed in already (the cookie survives reloads)? Anything but an answer shows the sign-in.
    api<Me>('GET', '/api/v1/me').then(setMe, () => setMe(null));
    const off = onSignedOut(() => setMe(null));
    const onHash = (): void => setPage(currentHash());
    window.addEventListener('hashchange', onHash);
    return () => {
      off();
      window.removeEventListener('hashchange', onHash);
    };
  }, []);

  const live = useMemo(
    () =>
      new LiveConnection({
        onEvent: (e: BridgeEvent) => {
          const row = feedRowOf(e);
          if (row) setFeed((rows) => [row, ...rows].slice(0, FEED_ROWS));
          if (e.type === 'interception.ended') setEnded((n) => n + 1);
        },
        onState: setLiveState,
        onUnauthorized: () => setMe(null),
      }),
    [],
  );
  useEffect(() => {
    if (me) live.start();
    else live.stop();
  }, [me, live]);

  if (me === undefined) return <p class="loading">Loading…</p>;
  if (me === null)
    return (
      <SignIn
        onSignedIn={(s: SessionInfo) => {
          setFeed([]);
          setMe({ user: s.user, key: s.key });
        }}
      />
    );

  const isAdmin = me.user.role === 'admin';
  const routes = ROUTES.filter((r) => r.admin === null || r.admin === isAdmin);
  const route = routes.find((r) => r.id === page) ?? routes[0]!;
  const signOut = async (): Promise<void> => {
    await api('DELETE', '/api/v1/session').catch(() => undefined);
    live.stop();
    setMe(null);
  };

  return (
    <div class="shell">
      <header class="top">
        <strong class="brand">AI Bridge</strong>
        <nav>
          {routes.map((r) => (
            <a key={r.id} href={`#/${r.id}`} class={r.id === route.id ? 'active' : undefined}>
              {r.title}
            </a>
          ))}
        </nav>
        <span class={`live-state ${liveState}`} data-testid="live-state" title="Live events">
          {liveState === 'open' ? 'live' : liveState}
        </span>
        <span class="who">
          {me.user.email} ({me.user.role})
        </span>
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main data-page={route.id}>
        {route.id === 'overview' && <OverviewPage me={me} feed={feed} ended={ended} />}
        {route.id === 'users' && <UsersPage />}
        {route.id === 'keys' && <KeysPage me={me} />}
        {route.id === 'engagement' && <EngagementPage />}
        {route.id === 'budgets' && <BudgetsPage ended={ended} />}
        {route.id === 'governance' && <GovernancePage />}
        {route.id === 'audit' && <AuditPage me={me} />}
        {route.id === 'sessions' && <SessionsPage />}
        {route.id === 'mcp' && <McpPage />}
        {route.id === 'providers' && <ProvidersPage />}
      </main>
    </div>
  );
}
