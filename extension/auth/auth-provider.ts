import * as vscode from 'vscode';
import type { Session, SignedIn } from './session';

function toSession(s: SignedIn): vscode.AuthenticationSession {
  return {
    // The key's id: stable while the key lives, new after every sign-in.
    id: s.keyInfo?.id ?? 'aibridge',
    accessToken: s.key,
    account: { id: s.user?.id ?? s.url, label: s.user?.email ?? s.url },
    scopes: [],
  };
}

/**
 * The bridge sign-in as a VS Code authentication provider, so it shows in the Accounts menu and
 * other extensions can ask for it. The Session stays the one source of truth: signing in or out
 * anywhere (command, link, deactivation) is reported here, and the Accounts menu's Sign Out runs
 * the same sign-out as the command.
 */
export class BridgeAuthProvider implements vscode.AuthenticationProvider, vscode.Disposable {
  private readonly changed =
    new vscode.EventEmitter<vscode.AuthenticationProviderAuthenticationSessionsChangeEvent>();
  readonly onDidChangeSessions = this.changed.event;
  private last: vscode.AuthenticationSession | undefined;
  private readonly subscription: { dispose(): void };

  constructor(
    private readonly session: Session,
    private readonly signIn: () => Promise<SignedIn | undefined>,
    private readonly signOut: () => Promise<void>,
  ) {
    this.last = session.current ? toSession(session.current) : undefined;
    this.subscription = session.onDidChange((s) => this.follow(s));
  }

  async getSessions(): Promise<vscode.AuthenticationSession[]> {
    const s = this.session.current;
    return s ? [toSession(s)] : [];
  }

  async createSession(): Promise<vscode.AuthenticationSession> {
    const s = this.session.current ?? (await this.signIn());
    if (!s) throw new Error('AI Bridge: sign-in cancelled.');
    return toSession(s);
  }

  async removeSession(): Promise<void> {
    await this.signOut();
  }

  private follow(s: SignedIn | undefined): void {
    const next = s ? toSession(s) : undefined;
    const prev = this.last;
    this.last = next;
    if (prev?.id === next?.id && prev?.accessToken === next?.accessToken) return;
    this.changed.fire({
      added: next && !prev ? [next] : [],
      removed: prev && !next ? [prev] : [],
      changed: prev && next ? [next] : [],
    });
  }

  dispose(): void {
    this.subscription.dispose();
    this.changed.dispose();
  }
}
