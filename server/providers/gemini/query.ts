/**
 * Query parameters a Google API request may carry through the bridge. Every Google API reads
 * "system parameters" from the query as well as from headers (cloud.google.com/apis/docs/system-parameters):
 * a credential (`access_token`, `oauth_token`), the project billed (`userProject`), a content type
 * (`$ct`), a field mask, JSONP. Sent beside the instance's key they are Google's to read, not the
 * bridge's: an `access_token` that fails gets the request a 401, and a 401 puts a pool key out of
 * use for everyone. So the query is an allow-list: what Google's own clients send (`alt`), what
 * only formats an answer (`prettyPrint`, `$.xgafv`), and a model list's paging.
 */
const PASSED = new Set(['alt', '$alt', 'prettyPrint', '$prettyPrint', '$.xgafv', 'pageSize', 'pageToken']);

/** Why the query cannot go upstream (a message for `400 unsupported_parameter`), or null. */
export function googleQueryRefusal(query: string): string | null {
  // What Google's own clients send, answered without parsing: the common case on every stream.
  if (query.length <= 1 || query === '?alt=sse' || query === '?alt=json') return null;
  // Names as Google decodes them (`%61ccess_token` is `access_token`); `key` was moved to its
  // header before this (query-credential.ts).
  for (const name of new URLSearchParams(query).keys()) {
    if (PASSED.has(name)) continue;
    return `The bridge does not accept the query parameter \`${name.slice(0, 40)}\` on Google's APIs: only \`alt\`, \`prettyPrint\`, \`$.xgafv\` and a model list's \`pageSize\`/\`pageToken\` go upstream (a credential, a billed project or a content type in the query would be Google's to read, not the bridge's).`;
  }
  return null;
}
