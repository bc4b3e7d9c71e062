import type { OAuthClientInformationMixed, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
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
  updatedAt: string;
}

const slot = (server: string, userId: string): string => `mcp_credential:${server}:${userId}`;
const docId = (server: string, userId: string): string => `${server}:${userId}`;

/**
 * Per-user MCP credentials, sealed with the credentials key before they reach the store and opened
 * only to connect to the server. Without a key nothing can be stored (`mcp_no_credentials_key`).
 */
export class McpCredentials {
  private readonly docs = new Map<string, CredentialDoc>();

  constructor(
    private readonly store: Store,
    private readonly cipher: CredentialCipher | undefined,
  ) {}

  get enabled(): boolean {
    return this.cipher !== undefined;
  }

  /** Reads the stored credentials, replacing what was loaded (again when another replica changes them). */
  async load(): Promise<void> {
    const docs = await this.store.listDocs<CredentialDoc>('mcp_credential');
    this.docs.clear();
    for (const d of docs) this.docs.set(docId(d.server, d.userId), d);
  }

  private requireCipher(): CredentialCipher {
    if (!this.cipher) throw new BridgeError('mcp_no_credentials_key');
    return this.cipher;
  }

  /** The opened credential; undefined when there is none, or it cannot be opened (wrong key). */
  get(server: string, userId: string): Credential | undefined {
    const d = this.docs.get(docId(server, userId));
    if (!d || !this.cipher) return undefined;
    try {
      return JSON.parse(this.cipher.open(d.sealed, slot(server, userId))) as Credential;
    } catch {
      return undefined;
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
  }

  async delete(server: string, userId: string): Promise<boolean> {
    this.docs.delete(docId(server, userId));
    return this.store.deleteDoc('mcp_credential', docId(server, userId));
  }

  /** Removes every user's credential for a server that no longer exists. */
  async deleteServer(server: string): Promise<void> {
    for (const d of [...this.docs.values()]) if (d.server === server) await this.delete(server, d.userId);
  }

  info(server: string, userId: string): CredentialInfo | null {
    const d = this.docs.get(docId(server, userId));
    if (!d) return null;
    const authorized =
      d.kind === 'token' || (this.get(server, userId) as { tokens?: unknown })?.tokens !== undefined;
    return { server, kind: d.kind, authorized, updatedAt: d.updatedAt };
  }
}
