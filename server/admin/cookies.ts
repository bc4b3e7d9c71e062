import type { IncomingHttpHeaders } from 'node:http';

/** The admin page's session cookie. */
export const SESSION_COOKIE = 'aibridge_session';

/**
 * What `readCookie` answers for a name sent twice with different values. Browsers keep cookies
 * apart by path and domain, not by port: a page on another port of the bridge's host (or a
 * sibling subdomain) can set `aibridge_session` with a longer path, and the browser then sends
 * both, the planted one first, so the victim would act in the attacker's session (their device
 * approved into the attacker's account, their prompts in the attacker's audit). Two cookies are
 * taken for none: signed out. Never a valid token (not base64url).
 */
export const AMBIGUOUS_COOKIE = '(two cookies)';

/**
 * One cookie's value from a `Cookie` header. The bridge sets exactly one cookie with a token of
 * base64url characters, so this reads just that name and ignores everything else in the header;
 * `AMBIGUOUS_COOKIE` when the name comes twice with different values.
 */
export function readCookie(headers: IncomingHttpHeaders, name: string): string | undefined {
  const values = readCookies(headers, name);
  return values.length > 1 ? AMBIGUOUS_COOKIE : values[0];
}

/** Every value a `Cookie` header gives `name` (two when a page elsewhere on the host planted one). */
export function readCookies(headers: IncomingHttpHeaders, name: string): string[] {
  const header = headers.cookie;
  if (typeof header !== 'string') return [];
  // A Set: a header of hundreds of such cookies (16 KB of them) stays one linear pass.
  const out = new Set<string>();
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    const value = part.slice(eq + 1).trim();
    if (value !== '') out.add(value);
  }
  return [...out];
}

export interface CookieOptions {
  /** Seconds until the browser drops it; 0 deletes it now. */
  maxAgeSeconds: number;
  /** Only over https (set when the bridge is served over TLS or AIBRIDGE_PUBLIC_URL is https). */
  secure: boolean;
}

/**
 * A `Set-Cookie` value the page's scripts cannot read (HttpOnly) and that browsers never attach to
 * a request started by another site (SameSite=Strict). `value` is a base64url token: no escaping needed.
 */
export function sessionCookie(value: string, opts: CookieOptions): string {
  const parts = [
    `${SESSION_COOKIE}=${value}`,
    'Path=/',
    `Max-Age=${Math.max(0, Math.floor(opts.maxAgeSeconds))}`,
    'HttpOnly',
    'SameSite=Strict',
  ];
  if (opts.secure) parts.push('Secure');
  return parts.join('; ');
}
