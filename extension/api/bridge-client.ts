import type { KeyInfo, ProviderInstanceInfo, User } from '../../shared/identity';
import type { GatewayToolCall, Interception, Page } from '../../shared/interception';
import type { BudgetStatus, Period, UsageRow } from '../../shared/spend';
import type { AuthConfig } from '../../shared/sso';
import type { Usage } from '../../shared/usage';

/** `GET /api/v1/usage/me` (docs/spend.md). */
export interface UsageMe {
  period: Period;
  since: string;
  until: string;
  requests: number;
  usage: Usage;
  costUsd: number;
  unpricedRequests: number;
  byModel: UsageRow[];
  budgets: (BudgetStatus & { label?: string })[];
}

export interface Me {
  user: User;
  key: KeyInfo;
  /** The provider instances the bridge serves; absent from a bridge older than the list. */
  providers?: ProviderInstanceInfo[];
}

/** A failed call: `status` 0 when the bridge could not be reached at all. */
export class BridgeApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'BridgeApiError';
  }

  get unauthorized(): boolean {
    return this.status === 401;
  }
}

export type Fetch = (url: string, init: RequestInit) => Promise<Response>;

/** A request to the bridge; a network failure or timeout is BridgeApiError status 0 (`unreachable`). */
async function reach(fetchImpl: Fetch, baseUrl: string, path: string, init: RequestInit): Promise<Response> {
  try {
    return await fetchImpl(baseUrl + path, init);
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    const why = (err as Error).name === 'TimeoutError' ? 'timed out' : (cause ?? (err as Error).message);
    throw new BridgeApiError(0, 'unreachable', `Cannot reach the bridge at ${baseUrl} (${why}).`);
  }
}

/**
 * How the bridge signs people in (`GET /api/v1/auth/config`, public): with single sign-on the
 * extension signs in through the browser, without it it asks for a key. Throws BridgeApiError
 * (status 0) when the bridge cannot be reached.
 */
export async function fetchAuthConfig(
  baseUrl: string,
  fetchImpl: Fetch = (url, init) => fetch(url, init),
): Promise<AuthConfig> {
  const res = await reach(fetchImpl, baseUrl, '/api/v1/auth/config', {
    headers: { accept: 'application/json' },
    signal: AbortSignal.timeout(10_000),
  });
  // An older bridge without the route: no single sign-on.
  if (res.status === 404) return { sso: null, keySignIn: true };
  if (!res.ok)
    throw new BridgeApiError(
      res.status,
      `http_${res.status}`,
      `The bridge answered ${res.status} to /api/v1/auth/config.`,
    );
  return (await res.json()) as AuthConfig;
}

/** The few admin-API routes the extension reads, with the bridge key. No vscode here. */
export class BridgeClient {
  constructor(
    readonly baseUrl: string,
    private readonly key: string,
    private readonly fetchImpl: Fetch = (url, init) => fetch(url, init),
    private readonly timeoutMs = 10_000,
  ) {}

  me(): Promise<Me> {
    return this.get('/api/v1/me');
  }

  /** Pushes this device key's expiry forward (`POST /api/v1/auth/device/renew`). */
  renewKey(): Promise<{ key: KeyInfo }> {
    return this.request('POST', '/api/v1/auth/device/renew');
  }

  /** Revokes one of the caller's own keys (`DELETE /api/v1/keys/:id`): signing out of a device key ends it. */
  revokeKey(id: string): Promise<KeyInfo> {
    return this.request('DELETE', `/api/v1/keys/${encodeURIComponent(id)}`);
  }

  usageMe(period: Period): Promise<UsageMe> {
    return this.get(`/api/v1/usage/me?period=${period}`);
  }

  /** Newest first; `user` narrows an admin's view to one user (members only ever see their own). */
  interceptions(q: { limit: number; user?: string }): Promise<Page<Interception>> {
    const params = new URLSearchParams({ limit: String(q.limit) });
    if (q.user) params.set('user', q.user);
    return this.get(`/api/v1/interceptions?${params}`);
  }

  /**
   * One user's recent calls through the MCP gateway (`GET /api/v1/tool-calls?via=gateway`). The
   * user is always named: for an admin's key the route's default is everyone's calls.
   */
  gatewayCalls(q: { limit: number; user: string }): Promise<{ items: GatewayToolCall[] }> {
    const params = new URLSearchParams({ via: 'gateway', limit: String(q.limit), user: q.user });
    return this.get(`/api/v1/tool-calls?${params}`);
  }

  interception(id: string): Promise<Interception> {
    return this.get(`/api/v1/interceptions/${encodeURIComponent(id)}`);
  }

  private get<T>(path: string): Promise<T> {
    return this.request('GET', path);
  }

  private async request<T>(method: 'GET' | 'POST' | 'DELETE', path: string): Promise<T> {
    const res = await reach(this.fetchImpl, this.baseUrl, path, {
      method,
      headers: { authorization: `Bearer ${this.key}`, accept: 'application/json' },
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (!res.ok) {
      const e = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new BridgeApiError(
        res.status,
        e?.code ?? `http_${res.status}`,
        e?.message ?? `The bridge answered ${res.status} to ${path.split('?')[0]}.`,
      );
    }
    if (body === undefined) {
      throw new BridgeApiError(
        res.status,
        'not_json',
        `The bridge sent something that is not JSON for ${path}.`,
      );
    }
    return body as T;
  }
}
