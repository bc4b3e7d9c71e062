import { plainNotificationText } from '../format';
import { AUTH_COMPLETE_URI_PATH, SIGN_IN_URI_PATH } from '../ids';
import { type Credentials, parseSignInQuery } from './sign-in';

/** What a link to the extension (`<scheme>://aibridge.ai-bridge/<path>?<query>`) asks for. */
export type LinkAction =
  /** The browser came back from a sign-in (the query names its nonce). */
  | { type: 'authComplete'; query: string }
  /** A sign-in link: the user confirms before it is used. */
  | { type: 'signIn'; credentials: Credentials }
  /** Nothing to do: `message` says why, as a notification's plain text. */
  | { type: 'refuse'; message: string };

/**
 * Reads a link. Any web page can open one (VS Code asks the user first), so its path and query are
 * a stranger's text: a refusal that quotes them must not become a notification link such as
 * `[Finish signing in](command:…)`, which would run that command when clicked.
 */
export function linkAction(path: string, query: string): LinkAction {
  if (path === AUTH_COMPLETE_URI_PATH) return { type: 'authComplete', query };
  if (path !== SIGN_IN_URI_PATH)
    return { type: 'refuse', message: plainNotificationText(`AI Bridge: unknown link ${path}.`) };
  const parsed = parseSignInQuery(query);
  if (!parsed.ok) return { type: 'refuse', message: plainNotificationText(`AI Bridge: ${parsed.message}`) };
  return { type: 'signIn', credentials: parsed.value };
}
