import type { ProviderAdapter } from '../providers/types';

/** What the last attempt to obtain an instance's credential found. */
export interface CredentialState {
  readonly ok: boolean;
  /** Why it could not be obtained: the library's message (a path, a missing variable), never a secret. */
  readonly error?: string;
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

/** The last outcome; undefined: never tried yet. */
export function credentialState(adapter: ProviderAdapter): CredentialState | undefined {
  return states.get(adapter);
}
