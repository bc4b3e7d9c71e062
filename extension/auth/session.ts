import type { KeyInfo, ProviderInstanceInfo, User } from '../../shared/identity';
import { BridgeApiError, type Me } from '../api/bridge-client';
import { Emitter } from '../emitter';
import { STORAGE } from '../ids';
import type { Credentials } from './sign-in';
import { keyFingerprint } from './sign-in';

/** The part of `vscode.SecretStorage` the session uses. */
export interface SecretStore {
  get(key: string): PromiseLike<string | undefined>;
  store(key: string, value: string): PromiseLike<void>;
  delete(key: string): PromiseLike<void>;
  /** Fires when a secret changes, in this window or another of the same VS Code (shared storage). */
  onDidChange?: (listener: (e: { key: string }) => unknown) => { dispose(): unknown };
}

/** The part of `vscode.Memento` (global state) the session uses. */
export interface StateStore {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): PromiseLike<void>;
}

export interface SignedIn {
  url: string;
  key: string;
  /** Null when the bridge could not be reached to say who this is (restored offline); the live hello fills it in. */
  user: User | null;
  /** The key's id, expiry and whether it renews; null until the bridge has been reached. */
  keyInfo: KeyInfo | null;
  /**
   * The provider instances the bridge serves (which agents to point at it); null until the bridge
   * has been reached, [] from a bridge that predates the list.
   */
  providers: readonly ProviderInstanceInfo[] | null;
}

export type RestoreResult = 'restored' | 'restored-offline' | 'none' | 'rejected';

/**
 * A sign-in as kept in secret storage: the bridge's URL with its key, one value, so another window
 * reads the pair one write made and never sends a new key to the bridge signed in to before.
 */
function credentialsText(c: Credentials): string {
  return JSON.stringify({ url: c.url, key: c.key });
}

function parseCredentials(text: string | undefined): Credentials | null {
  if (text === undefined) return null;
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null) return null;
    const { url, key } = v as Record<string, unknown>;
    return typeof url === 'string' && typeof key === 'string' && url && key ? { url, key } : null;
  } catch {
    return null;
  }
}

/**
 * Who is signed in, to which bridge. The URL and key live together in secret storage (the URL also
 * in global state, as the next sign-in's default). Knows nothing of sockets, terminals or views:
 * they follow `onDidChange`.
 */
export class Session {
  private state: SignedIn | undefined;
  private readonly changed = new Emitter<SignedIn | undefined>();
  readonly onDidChange = this.changed.event;
  private readonly secretWatch: { dispose(): unknown } | undefined;
  /** The stored credentials as this window last wrote or read them (null: none), to tell another window's change from its own. */
  private known: string | null = null;
  /** Another window's change being followed: later changes queue behind it, so the last one wins. */
  private following: Promise<void> = Promise.resolve();
  /** Set by dispose: a follow under way stops asking the bridge and changes nothing. */
  private disposed = false;

  constructor(
    private readonly secrets: SecretStore,
    private readonly global: StateStore,
    private readonly me: (c: Credentials) => Promise<Me>,
  ) {
    // Every window of one VS Code shares secret storage: a sign-in or sign-out in one reaches the
    // others, which otherwise kept the old key (or none) in their terminals until reloaded.
    this.secretWatch = secrets.onDidChange?.((e) => {
      if (e.key !== STORAGE.credentials) return;
      this.following = this.following.then(() => this.followStored()).catch(() => undefined);
    });
  }

  /** Adopts the sign-in another window stored, or the lack of one (its sign-out). */
  private async followStored(): Promise<void> {
    const text = (await this.secrets.get(STORAGE.credentials)) ?? null;
    if (text === this.known) return;
    this.known = text;
    const c = parseCredentials(text ?? undefined);
    if (c === null) {
      if (this.state) this.set(undefined);
      return;
    }
    if (this.disposed || (this.state?.key === c.key && this.state.url === c.url)) return;
    let s: SignedIn;
    try {
      const me = await this.me(c);
      s = { ...c, user: me.user, keyInfo: me.key, providers: me.providers ?? [] };
    } catch (err) {
      // A key the bridge refuses is left to the window that stored it; an unreachable bridge is
      // signed in to offline, as a restore is.
      if (err instanceof BridgeApiError && err.unauthorized) return;
      s = { ...c, user: null, keyInfo: null, providers: null };
    }
    this.adopt(text, s);
  }

  /** Signs in as another window did, unless a newer change (or this window's own sign-in) came meanwhile. */
  private adopt(text: string | null, s: SignedIn): void {
    if (this.known === text && !this.disposed) this.set(s);
  }

  get current(): SignedIn | undefined {
    return this.state;
  }

  /** Checks credentials against `GET /api/v1/me`; throws BridgeApiError (401: bad key, 0: unreachable). */
  verify(c: Credentials): Promise<Me> {
    return this.me(c);
  }

  /** Signs in with what was stored, if anything. A key the bridge now refuses is forgotten. */
  async restore(): Promise<RestoreResult> {
    const c = await this.stored();
    if (!c) return 'none';
    try {
      const me = await this.me(c);
      this.set({ ...c, user: me.user, keyInfo: me.key, providers: me.providers ?? [] });
      return 'restored';
    } catch (err) {
      if (err instanceof BridgeApiError && err.unauthorized) {
        this.known = null;
        await this.secrets.delete(STORAGE.credentials);
        return 'rejected';
      }
      // The bridge is down or the network is: stay signed in, the live connection will retry.
      this.set({ ...c, user: null, keyInfo: null, providers: null });
      return 'restored-offline';
    }
  }

  /**
   * The stored sign-in. One an earlier version kept (the key alone in secret storage, the URL in
   * global state) is moved into the one value first, so it is read whole from then on.
   */
  private async stored(): Promise<Credentials | null> {
    const text = await this.secrets.get(STORAGE.credentials);
    this.known = text ?? null;
    const c = parseCredentials(text);
    if (c) return c;
    const key = await this.secrets.get(STORAGE.key);
    const url = this.global.get<string>(STORAGE.url);
    if (!key || !url) return null;
    const moved = { url, key };
    this.known = credentialsText(moved);
    await this.secrets.store(STORAGE.credentials, this.known);
    await this.secrets.delete(STORAGE.key);
    return moved;
  }

  /** Saves verified credentials and signs in. */
  async signIn(c: Credentials, me: Me): Promise<void> {
    await this.global.update(STORAGE.url, c.url);
    await this.global.update(STORAGE.declinedEnvKey, undefined);
    this.known = credentialsText(c);
    await this.secrets.store(STORAGE.credentials, this.known);
    this.set({ url: c.url, key: c.key, user: me.user, keyInfo: me.key, providers: me.providers ?? [] });
  }

  /** What the bridge now says of the key (after a renewal): same key, so nothing restarts. */
  noteKey(info: KeyInfo): void {
    if (this.state && (this.state.keyInfo === null || this.state.keyInfo.id === info.id))
      this.state = { ...this.state, keyInfo: info };
  }

  /**
   * What the bridge says of this sign-in, learnt once it is reached after a restore offline: who
   * this is, the key's id and expiry (without which a device key is never renewed and runs out in
   * an editor left open) and what it serves. Same key, so nothing restarts; only what is still
   * unknown is filled in. Returns whether the providers are new (the caller then re-applies what
   * depends on them).
   */
  noteMe(me: Me): boolean {
    const s = this.state;
    if (!s) return false;
    const providersNew = s.providers === null;
    this.state = {
      ...s,
      user: s.user ?? me.user,
      keyInfo: s.keyInfo ?? me.key,
      providers: s.providers ?? me.providers ?? [],
    };
    return providersNew;
  }

  /** Whether something an offline restore left unknown is still to be asked of the bridge ({@link noteMe}). */
  get incomplete(): boolean {
    const s = this.state;
    return s !== undefined && (s.user === null || s.keyInfo === null || s.providers === null);
  }

  /** Forgets the key (and remembers not to sign in again from this environment's key). */
  async signOut(envKey?: string): Promise<void> {
    this.known = null;
    await this.secrets.delete(STORAGE.credentials);
    await this.secrets.delete(STORAGE.key);
    await this.global.update(STORAGE.url, undefined);
    if (envKey) await this.global.update(STORAGE.declinedEnvKey, keyFingerprint(envKey));
    this.set(undefined);
  }

  /** Whether the user signed out of this environment key before (then it is not used again by itself). */
  declinedEnvKey(envKey: string): boolean {
    return this.global.get<string>(STORAGE.declinedEnvKey) === keyFingerprint(envKey);
  }

  private set(s: SignedIn | undefined): void {
    this.state = s;
    this.changed.fire(s);
  }

  dispose(): void {
    this.disposed = true;
    this.secretWatch?.dispose();
    this.changed.dispose();
  }
}
