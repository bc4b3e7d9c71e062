import { BridgeApiError } from '../api/bridge-client';
import { plainNotificationText } from '../format';
import { DeviceSignInError } from './device-sign-in';

/**
 * Why a sign-in failed, in words for a notification. The URL and the messages come from outside
 * (a `vscode://…/sign-in?url=…` link, a workspace setting, the bridge's own error answer), and a
 * notification turns `[label](command:…)` into a command link: the whole text is made plain here,
 * so that no caller can show a server's words as a link.
 */
export function signInFailure(err: unknown, url: string): string {
  return plainNotificationText(failureWords(err, url));
}

function failureWords(err: unknown, url: string): string {
  if (err instanceof BridgeApiError) {
    if (err.unauthorized) return 'The bridge refused this key (unknown, revoked or expired).';
    if (err.status === 0) return err.message;
    return `The bridge at ${url} answered ${err.status}: ${err.message}`;
  }
  if (err instanceof DeviceSignInError) return err.message;
  return `Sign-in failed: ${(err as Error).message}`;
}
