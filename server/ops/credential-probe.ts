import type { Clock } from '../clock';
import type { ProviderAdapter } from '../providers/types';
import { type CredentialState, credentialState } from '../routing/credential-health';
import { credentialHeaders } from '../routing/credentials';

/** How long an instance's credential outcome stands before the probe obtains it again itself. */
export const CREDENTIAL_RECHECK_MS = 30_000;
/** How long a probe waits for a credential (a metadata server may be slow to refuse). */
const WAIT_MS = 2_000;

/** One instance's credential as /readyz reports it; `ok: null`: not known yet (the check still runs). */
export type CredentialReport = CredentialState | { readonly ok: null };

/**
 * Whether each configured instance's credential can be obtained, for /readyz. Requests note their
 * own outcomes (routing/credential-health.ts); the probe obtains a credential itself at most once
 * per CREDENTIAL_RECHECK_MS per instance, so probes every few seconds never fetch a token each
 * time (the credential libraries cache theirs in between anyway).
 */
export class CredentialProbe {
  private readonly checkedAt = new WeakMap<ProviderAdapter, number>();
  private readonly running = new WeakMap<ProviderAdapter, Promise<void>>();

  constructor(
    private readonly adapters: readonly ProviderAdapter[],
    private readonly clock: Clock,
  ) {}

  /** Each configured instance's report, by name. */
  async reports(): Promise<Record<string, CredentialReport>> {
    const configured = this.adapters.filter((a) => a.configured);
    await Promise.all(configured.map((a) => this.refresh(a)));
    return Object.fromEntries(configured.map((a) => [a.id, credentialState(a) ?? { ok: null }]));
  }

  private async refresh(adapter: ProviderAdapter): Promise<void> {
    const last = this.checkedAt.get(adapter);
    const now = this.clock.now();
    if (last !== undefined && now - last < CREDENTIAL_RECHECK_MS) return;
    this.checkedAt.set(adapter, now);
    let check = this.running.get(adapter);
    if (!check) {
      // The outcome is noted by credentialHeaders; the rejection itself is what it noted.
      check = credentialHeaders(adapter).then(
        () => undefined,
        () => undefined,
      );
      this.running.set(adapter, check);
      void check.finally(() => this.running.delete(adapter));
    }
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((r) => {
      timer = setTimeout(r, WAIT_MS);
      timer.unref();
    });
    await Promise.race([check, waited]);
    clearTimeout(timer);
  }
}
