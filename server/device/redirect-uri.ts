/** Longer than any editor's callback URI, short enough to show on the approval page. */
export const MAX_REDIRECT_URI = 2048;

/** Schemes that run or read something in the browser itself instead of handing off to an app. */
const REFUSED_SCHEMES = new Set([
  'javascript:',
  'data:',
  'file:',
  'vbscript:',
  'blob:',
  'about:',
  'filesystem:',
]);

export type RedirectCheck = { ok: true; uri: string } | { ok: false; message: string };

/**
 * Where the verification page may send the browser once a device is approved: an editor's URI
 * handler (`vscode://…`, `cursor://…`) or, for browser-based editors (code-server, Codespaces), the
 * https URL `vscode.env.asExternalUri` made of it. The redirect carries no secret (the device
 * fetches its key with its device code) and the page names it before the user approves, so the
 * check only keeps out what a browser would execute, and URLs with credentials or fragments.
 */
export function checkRedirectUri(raw: string): RedirectCheck {
  if (raw.length > MAX_REDIRECT_URI)
    return { ok: false, message: `redirect_uri is longer than ${MAX_REDIRECT_URI} characters.` };
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { ok: false, message: 'redirect_uri is not an absolute URI.' };
  }
  if (!/^[a-z][a-z0-9+.-]*:$/.test(u.protocol) || REFUSED_SCHEMES.has(u.protocol))
    return { ok: false, message: `redirect_uri may not use the ${u.protocol} scheme.` };
  if (u.username || u.password) return { ok: false, message: 'redirect_uri may not carry credentials.' };
  if (u.hash) return { ok: false, message: 'redirect_uri may not have a fragment.' };
  if ((u.protocol === 'http:' || u.protocol === 'https:') && !u.host)
    return { ok: false, message: 'redirect_uri needs a host.' };
  return { ok: true, uri: u.href };
}
