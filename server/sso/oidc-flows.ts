import { createHash, randomBytes } from 'node:crypto';
import { BridgeError } from '../errors';
import {
  addressKey,
  evictionFor,
  ownOldestWhenFull,
  STARTS_PER_ADDRESS_PER_MINUTE,
} from '../http/address-share';
import { AuthThrottle } from '../identity/auth-throttle';
import type { Store } from '../store/types';

/** How long a sign-in may take between the bridge's redirect and the provider's answer. */
export const FLOW_TTL_MS = 10 * 60_000;

/**
 * Sign-ins under way at once: the route is public, and each call stores a document, so a loop
 * must not grow the store without bound. Past it, a new sign-in replaces the oldest of the address
 * with the most under way (address-share.ts): a loop from one place cannot lock everyone out.
 */
export const MAX_PENDING_FLOWS = 1000;

/** What the bridge must remember between sending the browser to the provider and its return. */
export interface FlowSecrets {
  state: string;
  nonce: string;
  codeVerifier: string;
  /** A same-origin path to land on after sign-in. */
  returnTo: string;
}

/** A flow as stored: keyed by the state's SHA-256, tied to one browser by the SHA-256 of its binding cookie. */
interface StoredFlow {
  id: string;
  nonce: string;
  codeVerifier: string;
  returnTo: string;
  browser: string;
  createdAt: string;
  expiresAt: string;
  /** addressKey of the client that started it. */
  addr?: string;
}

function digest(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/**
 * SSO flows kept in the store (kind `oidc_flow`), so a replica can finish a flow another one
 * started. Each is used once: the first callback deletes it, and only the caller whose delete
 * removed it goes on, so a replayed callback finds nothing even when two arrive together.
 */
export class OidcFlows {
  private readonly starts: AuthThrottle;

  constructor(
    private readonly store: Store,
    private readonly now: () => Date,
  ) {
    this.starts = new AuthThrottle(STARTS_PER_ADDRESS_PER_MINUTE, () => now().getTime());
  }

  /** Stores a new flow; returns the browser binding for the flow's cookie (never stored in clear). */
  async begin(flow: FlowSecrets, ip: string): Promise<string> {
    this.starts.take(
      ip,
      (seconds) =>
        new BridgeError(
          'rate_limited',
          `Too many sign-ins started from this address; try again in ${seconds} s.`,
          { headers: { 'retry-after': String(seconds) } },
        ),
    );
    const addr = addressKey(ip);
    await this.makeRoom(addr);
    const browser = randomBytes(32).toString('base64url');
    const now = this.now();
    const stored: StoredFlow = {
      id: digest(flow.state),
      nonce: flow.nonce,
      codeVerifier: flow.codeVerifier,
      returnTo: flow.returnTo,
      browser: digest(browser),
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + FLOW_TTL_MS).toISOString(),
      addr,
    };
    await this.store.putDoc('oidc_flow', stored.id, stored);
    return browser;
  }

  /** Takes the flow `state` names, once; `oidc_state_invalid` when it is missing, used, expired or another browser's. */
  async take(state: string | undefined, browser: string | undefined): Promise<FlowSecrets> {
    const invalid = (why: string) => new BridgeError('oidc_state_invalid', why);
    if (!state || state.length > 512)
      throw invalid('The sign-in has no state; start again from the sign-in page.');
    const id = digest(state);
    const flow = await this.store.getDoc<StoredFlow>('oidc_flow', id);
    if (!flow || !(await this.store.deleteDoc('oidc_flow', id)))
      throw invalid('This sign-in is unknown or was already used; start again from the sign-in page.');
    if (Date.parse(flow.expiresAt) <= this.now().getTime())
      throw invalid('This sign-in took more than 10 minutes; start again from the sign-in page.');
    // Login CSRF: a callback URL made for someone else's account must not sign this browser in.
    if (browser === undefined || digest(browser) !== flow.browser)
      throw invalid('This sign-in was started in another browser; start again from the sign-in page.');
    return { state, nonce: flow.nonce, codeVerifier: flow.codeVerifier, returnTo: flow.returnTo };
  }

  private async makeRoom(addr: string): Promise<void> {
    const now = this.now().getTime();
    const live: StoredFlow[] = [];
    for (const f of await this.store.listDocs<StoredFlow>('oidc_flow')) {
      if (Date.parse(f.expiresAt) <= now) await this.store.deleteDoc('oidc_flow', f.id);
      else live.push(f);
    }
    const evict = ownOldestWhenFull(live, addr) ?? evictionFor(live, MAX_PENDING_FLOWS);
    if (evict) await this.store.deleteDoc('oidc_flow', evict.id);
  }
}
