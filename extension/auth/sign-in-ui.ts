import * as vscode from 'vscode';
import type { Me } from '../api/bridge-client';
import { plainNotificationText } from '../format';
import { type Credentials, checkKey, isInsecureRemote, keyPrefix, normalizeBridgeUrl } from './sign-in';
import { signInFailure } from './sign-in-failure';

/** Asks for the bridge's URL, validated as typed. Undefined when the user cancels. */
export async function promptUrl(lastUrl: string | undefined): Promise<string | undefined> {
  const url = await vscode.window.showInputBox({
    title: 'AI Bridge: Sign In',
    prompt: 'The bridge URL your admin gave you',
    placeHolder: 'https://bridge.example.com',
    value: lastUrl ?? '',
    ignoreFocusOut: true,
    validateInput: (v) => {
      const r = normalizeBridgeUrl(v);
      return r.ok ? undefined : r.message;
    },
  });
  if (url === undefined) return undefined;
  const u = normalizeBridgeUrl(url);
  return u.ok ? u.value : undefined;
}

/** Asks for a bridge key (break-glass, or a bridge without single sign-on). Undefined when cancelled. */
export async function promptKey(): Promise<string | undefined> {
  const key = await vscode.window.showInputBox({
    title: 'AI Bridge: Sign In with a Key',
    prompt: 'Your bridge key (aib_…); it is kept in VS Code secret storage only',
    placeHolder: 'aib_…',
    password: true,
    ignoreFocusOut: true,
    validateInput: (v) => {
      const r = checkKey(v);
      return r.ok ? undefined : r.message;
    },
  });
  if (key === undefined) return undefined;
  const k = checkKey(key);
  return k.ok ? k.value : undefined;
}

/**
 * A link to plain http on another machine: asked before its key is sent anywhere, since checking
 * whose key it is would send it unencrypted. True to go on.
 */
export async function confirmInsecureLink(c: Credentials): Promise<boolean> {
  if (!isInsecureRemote(c.url)) return true;
  const choice = await vscode.window.showWarningMessage(
    plainNotificationText(`A link asks to sign you in to the AI Bridge at ${c.url}, over plain http.`),
    {
      modal: true,
      detail: plainNotificationText(
        'This is another machine, so the key would travel unencrypted, to be checked and then on every request. Continue only if you expected this link.',
      ),
    },
    'Continue',
  );
  return choice === 'Continue';
}

/**
 * Sign In (with a key or the browser) to a bridge over plain http on another machine: the key
 * would travel unencrypted, on every request after. True to go on.
 */
export async function confirmInsecureBridge(url: string): Promise<boolean> {
  const choice = await vscode.window.showWarningMessage(
    plainNotificationText(`The AI Bridge at ${url} is plain http on another machine.`),
    {
      modal: true,
      detail: plainNotificationText(
        'Your key, prompts and code would travel unencrypted to it, at sign-in and on every request after. Continue only if this network is private (your admin can serve the bridge over https).',
      ),
    },
    'Continue',
  );
  return choice === 'Continue';
}

/**
 * A sign-in link carries a key: once the bridge has said whose it is, the user confirms the bridge
 * and the account before it is used. The account matters as much as the URL: a colleague's link to
 * the real bridge with their own key would record this developer's prompts and code as theirs,
 * readable in their audit view.
 */
export async function confirmLink(
  c: Credentials,
  me: Me,
  current: { url: string; email: string | null } | undefined,
  known?: string,
): Promise<boolean> {
  const insecure = isInsecureRemote(c.url)
    ? ' Warning: this is plain http to another machine, so the key travels unencrypted.'
    : '';
  // The account shown is what the linked bridge says: a look-alike bridge can name anyone. Against
  // one, the URL is the only sign, so a link away from the bridge the user knows says so first.
  const elsewhere =
    known !== undefined && known !== c.url
      ? `This link is for another bridge than yours (${known}): the account below is only what ${c.url} says. Continue only if your admin told you the bridge moved. `
      : '';
  const team = me.user.team ? ` (team ${me.user.team})` : '';
  const replaces = current
    ? ` This replaces your sign-in${current.email ? ` as ${current.email}` : ''} at ${current.url}.`
    : '';
  const choice = await vscode.window.showWarningMessage(
    plainNotificationText(`Sign in to the AI Bridge at ${c.url} as ${me.user.email}?`),
    {
      modal: true,
      detail: plainNotificationText(
        `${elsewhere}A link asked to sign you in with key ${keyPrefix(c.key)}, which belongs to ${me.user.email}${team}: your requests, prompts and code will be recorded as theirs. Continue only if you expected it and that is you.${replaces}${insecure}`,
      ),
    },
    'Sign In',
  );
  return choice === 'Sign In';
}

/** Checks credentials with a progress notification; returns who they belong to, or shows why not. */
export async function verifyWithProgress(
  c: Credentials,
  verify: (c: Credentials) => Promise<Me>,
): Promise<Me | undefined> {
  try {
    return await vscode.window.withProgress(
      // The URL is the link's or a setting's: no link in a title.
      {
        location: vscode.ProgressLocation.Notification,
        title: plainNotificationText(`AI Bridge: checking ${c.url}…`),
      },
      () => verify(c),
    );
  } catch (err) {
    void vscode.window.showErrorMessage(`AI Bridge: ${signInFailure(err, c.url)}`);
    return undefined;
  }
}
