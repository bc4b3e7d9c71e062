import { BridgeError } from '../errors';
import { errorFromBody } from '../providers/common';
import type { ProviderAdapter } from '../providers/types';
import { noteAnswer, noteCredential } from './credential-health';
import { blameOf } from './key-refusal';
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
 * Tells the lease whose fault an organisation key's error answer (its body read) is, as blameOf
 * judges it: the key's (taken out, with what the provider said), the request's (nothing held
 * against the key); undefined when the body blames neither, and nothing was reported.
 */
export function reportBlame(
  lease: CredentialLease,
  status: number,
  body: unknown,
): 'key' | 'request' | undefined {
  const blame = blameOf(status, body);
  if (blame === 'key')
    lease.report({ status, keyRefused: true, reason: errorFromBody(status, body).message });
  else if (blame === 'request') lease.report({ status, requestsOwn: true });
  return blame;
}

/**
 * Whether an answer so blamed refuses the organisation's credential itself (the key's fault, or a
 * scope the key lacks): what the member is told with orgCredentialRefused.
 */
export function refusesOrgCredential(blame: 'key' | 'request' | undefined, status: number): boolean {
  return blame === 'key' || (blame === 'request' && status === 401);
}

/**
 * What a member sees when the provider refused the organisation's credential (revoked, leaked, out
 * of credit, or without the scope this endpoint needs), not their own: their bridge key was
 * accepted, and the provider's "invalid x-api-key" reads as their fault, which agents retry for
 * minutes. The provider's reason is kept: a key refused outright and one lacking what this request
 * needs both need an admin.
 */
export function orgCredentialRefused(instance: string, reason: string, status = 401): BridgeError {
  // OpenAI's "Incorrect API key provided: sk-…****abcd" shows the key's last characters: not the member's to see.
  const said = reason.replace(/\S*\*{3,}\S*/g, '[masked key]').slice(0, 300);
  return new BridgeError(
    'upstream_auth_failed',
    `The provider refused the organisation's credential for instance "${instance}" (${status}: ${said}); your bridge key was accepted. An admin must fix the provider key.`,
    { headers: { 'x-should-retry': 'false' } },
  );
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
