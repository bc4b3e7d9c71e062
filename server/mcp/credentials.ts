import type { OAuthClientInformationMixed, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import type { Log } from '../core/log';
import { BridgeError } from '../errors';
import type { Store } from '../store/types';
import type { CredentialCipher } from './cipher';

/** A user's credential for one server as stored: only ever sealed. */
interface CredentialDoc {
  server: string;
  userId: string;
  kind: 'token' | 'oauth';
  sealed: string;
  updatedAt: string;
}

/** What a sealed credential holds. */
export type Credential =
  | { kind: 'token'; token: string }
  | {
      kind: 'oauth';
      tokens?: OAuthTokens | undefined;
      client?: OAuthClientInformationMixed | undefined;
      /** PKCE verifier of an authorisation in progress. */
      verifier?: string | undefined;
    };

export interface CredentialInfo {
  server: string;
  kind: 'token' | 'oauth';
  /** OAuth: whether the authorisation finished (tokens are held). */
  authorized: boolean;
  /**
   * The stored credential cannot be opened with the bridge's credentials key (the key changed, or
   * the record was damaged): it is not used, and the user must set it again.
   */
  unreadable: boolean;
  updatedAt: string;
}

/** What is stored for a user at a server: nothing, something that cannot be opened, or a credential. */
export type CredentialLookup =
  | { state: 'none' }
  | { state: 'unreadable' }
  | { state: 'ok'; credential: Credential };

const slot = (server: string, userId: string): string => `mcp_credential:${server}:${userId}`;
const docId = (server: string, userId: string): string => `${server}:${userId}`;

/**
 * Per-user MCP credentials, sealed with the credentials key before they reach the store and opened
 * only to connect to the server. Without a key nothing can be stored (`mcp_no_credentials_key`).
 */
export class McpCredentials {
  private readonly docs = new Map<string, CredentialDoc>();
  /** Credentials whose opening failed and was logged, so a request per second does not log it again. */
  private readonly reported = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly cipher: CredentialCipher | undefined,
    private readonly log: Log,
  ) {}

  get enabled(): boolean {
    return this.cipher !== undefined;
  }

  /**
   * Reads the stored credentials, replacing what was loaded (again when another replica changes
   * them). Returns the credentials that were added, replaced or removed by the read; `bound` when
   * a connection made with the old one keeps using it (a token is sent as it was at connect; an
   * OAuth connection reads the stored tokens on each request, so a refresh elsewhere reaches it).
   */
  async load(): Promise<{ server: string; userId: string; bound: boolean }[]> {
    const docs = await this.store.listDocs<CredentialDoc>('mcp_credential');
    const before = new Map(this.docs);
    this.docs.clear();
    this.reported.clear();
    for (const d of docs) this.docs.set(docId(d.server, d.userId), d);
    const changed: { server: string; userId: string; bound: boolean }[] = [];
    for (const [id, d] of this.docs) {
      const was = before.get(id);
      before.delete(id);
      if (was?.sealed === d.sealed) continue;
      const bound = was?.kind !== 'oauth' || d.kind !== 'oauth';
      changed.push({ server: d.server, userId: d.userId, bound });
    }
    for (const d of before.values()) changed.push({ server: d.server, userId: d.userId, bound: true });
    return changed;
  }

  private requireCipher(): CredentialCipher {
    if (!this.cipher) throw new BridgeError('mcp_no_credentials_key');
    return this.cipher;
  }

  /** The opened credential; undefined when there is none or it cannot be opened (see `lookup`). */
  get(server: string, userId: string): Credential | undefined {
    const found = this.lookup(server, userId);
    return found.state === 'ok' ? found.credential : undefined;
  }

  /** What is stored, telling a credential that cannot be opened (an error, logged once) from none. */
  lookup(server: string, userId: string): CredentialLookup {
    const id = docId(server, userId);
    const d = this.docs.get(id);
    if (!d || !this.cipher) return { state: 'none' };
    try {
      return {
        state: 'ok',
        credential: JSON.parse(this.cipher.open(d.sealed, slot(server, userId))) as Credential,
      };
    } catch (err) {
      if (!this.reported.has(id)) {
        this.reported.add(id);
        // The cipher's error says only that authentication failed: nothing of the secret is in it.
        this.log.error(
          { err, server, userId },
          'mcp: a stored credential cannot be opened (was AIBRIDGE_MCP_CREDENTIALS_KEY changed?); the user must set it again',
        );
      }
      return { state: 'unreadable' };
    }
  }

  async put(server: string, userId: string, cred: Credential): Promise<void> {
    const cipher = this.requireCipher();
    const doc: CredentialDoc = {
      server,
      userId,
      kind: cred.kind,
      sealed: cipher.seal(JSON.stringify(cred), slot(server, userId)),
      updatedAt: new Date().toISOString(),
    };
    await this.store.putDoc('mcp_credential', docId(server, userId), doc);
    this.docs.set(docId(server, userId), doc);
    this.reported.delete(docId(server, userId));
  }

  async delete(server: string, userId: string): Promise<boolean> {
    this.docs.delete(docId(server, userId));
    return this.store.deleteDoc('mcp_credential', docId(server, userId));
  }

  /** The servers `userId` holds a credential for (loaded on this replica). */
  serversOf(userId: string): string[] {
    return [...this.docs.values()].filter((d) => d.userId === userId).map((d) => d.server);
  }

  /** Removes every user's credential for a server that no longer exists. */
  async deleteServer(server: string): Promise<void> {
    for (const d of [...this.docs.values()]) if (d.server === server) await this.delete(server, d.userId);
  }

  info(server: string, userId: string): CredentialInfo | null {
    const d = this.docs.get(docId(server, userId));
    if (!d) return null;
    const found = this.lookup(server, userId);
    const unreadable = found.state === 'unreadable';
    const authorized =
      !unreadable &&
      (d.kind === 'token' ||
        (found.state === 'ok' && (found.credential as { tokens?: unknown }).tokens !== undefined));
    return { server, kind: d.kind, authorized, unreadable, updatedAt: d.updatedAt };
  }
}
