import { randomBytes } from 'node:crypto';
import os from 'node:os';
import * as vscode from 'vscode';
import { plainNotificationText } from '../format';
import { AUTH_COMPLETE_URI_PATH, EXTENSION_ID } from '../ids';
import {
  type DeviceKey,
  DeviceSignInError,
  startDeviceSignIn,
  Waker,
  waitForDeviceKey,
} from './device-sign-in';

/** The key's name in the bridge's key list: which editor, on which machine, for which workspace. */
export function deviceName(): string {
  const where = vscode.workspace.name ? ` (${vscode.workspace.name})` : '';
  return `${vscode.env.appName} on ${os.hostname()}${where}`.slice(0, 100);
}

/**
 * One browser sign-in at a time: the URI handler hands `/auth-complete?nonce=…` here, which wakes
 * the poll of the sign-in that nonce belongs to. A URI with another nonce (an old tab, a link
 * someone sent) does nothing.
 */
export class BrowserSignIn {
  private pending: { nonce: string; waker: Waker } | undefined;

  /** The browser came back through the URI handler. */
  complete(query: string): boolean {
    const nonce = new URLSearchParams(query).get('nonce');
    if (!this.pending || nonce !== this.pending.nonce) return false;
    this.pending.waker.wake();
    return true;
  }

  /**
   * Opens the bridge's sign-in page (which goes on to the identity provider when the browser is
   * not signed in to the bridge yet), and waits for the approval. Undefined when cancelled; throws
   * DeviceSignInError otherwise.
   */
  async run(url: string, idp: string | undefined): Promise<DeviceKey | undefined> {
    const nonce = randomBytes(16).toString('base64url');
    const local = vscode.Uri.parse(
      `${vscode.env.uriScheme}://${EXTENSION_ID}${AUTH_COMPLETE_URI_PATH}?nonce=${nonce}`,
    );
    // In remote workspaces and browser-based editors the local URI is not reachable from the browser.
    const external = await vscode.env.asExternalUri(local);
    const grant = await startDeviceSignIn(url, deviceName(), external.toString());
    const waker = new Waker();
    this.pending = { nonce, waker };
    try {
      const opened = await vscode.env.openExternal(vscode.Uri.parse(grant.verificationUri, true));
      if (!opened) throw new DeviceSignInError('cancelled', 'The browser was not opened.');
      return await vscode.window.withProgress(
        {
          location: vscode.ProgressLocation.Notification,
          // The identity provider's name and the code are the bridge's words: no link in a title.
          title: plainNotificationText(
            `AI Bridge: finish signing in${idp ? ` with ${idp}` : ''} in your browser (code ${grant.userCode})…`,
          ),
          cancellable: true,
        },
        async (_progress, token) => {
          const abort = new AbortController();
          const sub = token.onCancellationRequested(() => abort.abort());
          try {
            return await waitForDeviceKey(url, grant, { waker, signal: abort.signal });
          } catch (err) {
            if (err instanceof DeviceSignInError && err.code === 'cancelled') return undefined;
            throw err;
          } finally {
            sub.dispose();
          }
        },
      );
    } finally {
      if (this.pending?.nonce === nonce) this.pending = undefined;
    }
  }
}
