import { BridgeError } from '../errors';
import type { ProviderAdapter } from '../providers/types';
import { noteAnswer, noteCredential } from './credential-health';
import { upstreamRetryAfterMs } from './retry-after';

/** How one upstream attempt went, for the credential that carried it. */
export interface AttemptOutcome {
  /** The upstream's HTTP status; 0 when no answer came (connection refused, timeout). */
  readonly status: number;
  /** The upstream's `retry-after`, in milliseconds, when it gave one. */
  readonly retryAfterMs?: number;
  /**
   * The answer's body says the key itself is refused whatever is asked (key-refusal.ts `blameOf`):
   * revoked, leaked, or its account out of credit.
   */
  readonly keyRefused?: boolean;
  /**
   * The answer refuses only what this request asked (a scope a restricted key lacks, a request over
   * the whole per-minute limit): nothing is held against the key.
   */
  readonly requestsOwn?: boolean;
  /** What the provider said, for the alert when the key is taken out. */
  readonly reason?: string;
}

/** The credential chosen for one upstream attempt. */
export interface CredentialLease {
  /** The key's name in its instance's pool, for records and metrics (never the secret); null: the instance's only credential. */
  readonly keyName: string | null;
  /** The headers that carry it upstream. */
  readonly headers: Record<string, string>;
  /** Tells the pool how the attempt went (cooldown on 429/529, out of rotation on 401 or a key-refusing 403). */
  report(outcome: AttemptOutcome): void;
  /** Tells the pool the tokens the attempt used, once known (a key's `tpm`); absent: nothing counts them. */
  used?(tokens: number): void;
}

/**
 * Where an instance's upstream credentials come from, one per attempt. A key pool
 * (server/routing/key-pool.ts) spreads attempts over several keys; `acquire` rejects with a
 * BridgeError when none can serve now (every key cooling down: 429 with the shortest
 * retry-after; every key failed authentication: 502 naming the instance).
 */
export interface CredentialSource {
  /** The lease itself when it is at hand (a static key: no promise on every request), else its promise. */
  acquire(): CredentialLease | Promise<CredentialLease>;
}

/** Tells the lease how the upstream answered: its status and, when it gave one, its wait. */
export function reportAnswer(
  lease: CredentialLease,
  res: { statusCode: number; headers: Record<string, string | string[] | undefined> },
  nowMs: number,
): void {
  const retryAfterMs = upstreamRetryAfterMs(res.headers, nowMs);
  lease.report({ status: res.statusCode, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
}

/**
 * Whether an instance can serve: it has its own key or credential, or keys in its pool (a key added
 * at run time makes an instance without `apiKey` serve). Requests, readiness and the start warning
 * all ask this.
 */
export function instanceServes(
  instance: { id: string; configured: boolean },
  pools: { hasKeys(instance: string): boolean } | undefined,
): boolean {
  return instance.configured || (pools?.hasKeys(instance.id) ?? false);
}

/**
 * The instance's own single credential: what every instance without a pool uses. `refused`: the
 * provider refused it (401, or a 403 naming the key) after accepting it, or for the first time.
 */
export function singleCredential(
  adapter: ProviderAdapter,
  refused?: (status: number, reason?: string) => void,
): CredentialSource {
  const report = (o: AttemptOutcome): void => {
    if (o.requestsOwn) return;
    if (noteAnswer(adapter, o.status, o.keyRefused === true)) refused?.(o.status, o.reason);
  };
  const lease = (headers: Record<string, string>): CredentialLease => ({ keyName: null, headers, report });
  return {
    acquire() {
      const headers = credentialHeadersNow(adapter);
      return headers instanceof Promise ? headers.then(lease) : lease(headers);
    },
  };
}

/**
 * The instance's credential headers; a credential that cannot be obtained (an Entra token, say)
 * is a 503 naming the instance, never a request sent without one.
 */
export function credentialHeaders(adapter: ProviderAdapter): Promise<Record<string, string>> {
  return Promise.resolve(credentialHeadersNow(adapter));
}

/** credentialHeaders, without a promise when the adapter has them at hand (a static key). */
function credentialHeadersNow(
  adapter: ProviderAdapter,
): Record<string, string> | Promise<Record<string, string>> {
  let headers: Record<string, string> | Promise<Record<string, string>>;
  try {
    headers = adapter.authHeaders();
  } catch (err) {
    return unobtainable(adapter, err);
  }
  if (headers instanceof Promise)
    return headers.then(
      (h) => {
        noteCredential(adapter);
        return h;
      },
      (err: unknown) => unobtainable(adapter, err),
    );
  // Every outcome is kept for /readyz, so the probe rarely has to fetch a credential itself.
  noteCredential(adapter);
  return headers;
}

function unobtainable(adapter: ProviderAdapter, err: unknown): Promise<never> {
  noteCredential(adapter, err);
  return Promise.reject(
    new BridgeError(
      'provider_not_configured',
      `The credential of provider instance "${adapter.id}" could not be obtained (${(err as Error).message}).`,
      { cause: err },
    ),
  );
}
