import type { ProviderAdapter } from '../providers/types';

/** What the last attempt to obtain an instance's credential found. */
export interface CredentialState {
  readonly ok: boolean;
  /** Why it could not be obtained: the library's message (a path, a missing variable), never a secret. */
  readonly error?: string;
  /**
   * The provider refused it (401) on the last request that used it: obtained, but not accepted.
   * The replica stays ready (degraded): its admin API is how the key gets replaced.
   */
  readonly refused?: true;
}

/** Longest reason kept: enough to act on, bounded whatever a credential library throws. */
const REASON_LIMIT = 300;

/**
 * The last outcome per adapter, whoever asked (a request or the readiness probe). Keyed by the
 * adapter object, which is built once per configuration, so bridges sharing a process (tests,
 * replicas in one runtime) never see each other's instances.
 */
const states = new WeakMap<ProviderAdapter, CredentialState>();

export function noteCredential(adapter: ProviderAdapter, err?: unknown): void {
  states.set(
    adapter,
    err === undefined
      ? { ok: true }
      : { ok: false, error: String((err as Error)?.message ?? err).slice(0, REASON_LIMIT) },
  );
}

/** Instances whose single credential the provider refused, with the status, until it accepts it again. */
const refusals = new WeakMap<ProviderAdapter, number>();
/** How many are in `refusals` (a WeakMap has no size); an adapter dropped while refused stays counted, harmlessly. */
let refusedCount = 0;

/**
 * How the provider answered a request on the instance's single credential: a 401 (or a 403 naming
 * the key) marks it refused, any answer under 400 clears that. True when it was refused just now
 * (it was not before): the moment to tell an admin.
 */
export function noteAnswer(adapter: ProviderAdapter, status: number, keyRefused: boolean): boolean {
  if (status === 401 || keyRefused) {
    if (refusals.has(adapter)) return false;
    refusals.set(adapter, status);
    refusedCount++;
    return true;
  }
  // Nearly every answer, with no refusal anywhere: no map touched per request.
  if (refusedCount > 0 && status > 0 && status < 400 && refusals.delete(adapter)) refusedCount--;
  return false;
}

/** The last outcome; undefined: never tried yet. */
export function credentialState(adapter: ProviderAdapter): CredentialState | undefined {
  const refused = refusals.get(adapter);
  if (refused !== undefined)
    return {
      ok: false,
      refused: true,
      error: `the provider refused the organisation's credential (${refused}) on the last request that used it`,
    };
  return states.get(adapter);
}
