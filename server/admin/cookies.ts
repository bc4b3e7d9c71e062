import type { IncomingHttpHeaders } from 'node:http';

/** The admin page's session cookie. */
export const SESSION_COOKIE = 'aibridge_session';

/**
 * One cookie's value from a `Cookie` header. The bridge sets exactly one cookie with a token of
 * base64url characters, so this reads just that name and ignores everything else in the header.
 */
export function readCookie(headers: IncomingHttpHeaders, name: string): string | undefined {
  const header = headers.cookie;
  if (typeof header !== 'string') return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    const value = part.slice(eq + 1).trim();
    return value === '' ? undefined : value;
  }
  return undefined;
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
