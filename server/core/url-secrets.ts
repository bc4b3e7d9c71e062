/**
 * Credentials a text may carry in a URL: a password in the authority (`https://u:pw@host`) and the
 * query parameters that hold keys and tokens. An MCP server's or a webhook's URL is the admin's,
 * and the HTTP client's errors repeat it (with its cause) in their message and stack: logged whole,
 * a failing server's password went to the log on every retry. In the core, as configuration, the
 * CLI, MCP and the log's error serializer all mask them.
 */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)[^\s/@]+@/gi;
const SECRET_PARAM =
  /([?&](?:access_token|api[_-]?key|apikey|auth|code|key|password|secret|sig|signature|token|x-goog-api-key)=)[^&#\s"']+/gi;

/** `s` with the credentials in its URLs replaced by `***`. */
export function withoutUrlSecrets(s: string): string {
  return s.replace(URL_PASSWORD, '$1***@').replace(SECRET_PARAM, '$1***');
}

/**
 * A key pasted into a base URL ends up in the path (`/anthropic/aib_…/v1/messages`): bridge keys
 * and the providers' key shapes (escaped or not), each cut to its prefix.
 */
const PATH_KEY = /(aib_|aib%5[Ff]|sk-ant-|sk-proj-|sk-|AIza)(?:[A-Za-z0-9_-]|%[0-9A-Fa-f]{2}){16,}/g;

/** A request path as it may be logged: keys in it masked (PATH_KEY). */
export function withoutPathKeys(path: string): string {
  return path.replace(PATH_KEY, '$1***');
}
