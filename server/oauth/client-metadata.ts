import { checkRedirectUri } from '../device/redirect-uri';

/** Redirect URIs one client may register. */
const MAX_REDIRECT_URIS = 10;
const MAX_CLIENT_NAME = 100;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);

export type Checked<T> = { ok: true; value: T } | { ok: false; error: string; message: string };

/**
 * A redirect URI a client may register: https anywhere, or http on the loopback interface only
 * (RFC 8252 §7.3, the native-app pattern Claude Code and VS Code use). The device flow's checker
 * first keeps out schemes a browser executes, credentials and fragments; custom schemes are then
 * refused too, as the code would go to whichever app claims the scheme.
 */
export function checkClientRedirectUri(raw: string): Checked<string> {
  const first = checkRedirectUri(raw);
  if (!first.ok) return { ok: false, error: 'invalid_redirect_uri', message: first.message };
  const u = new URL(first.uri);
  if (u.protocol === 'https:') return { ok: true, value: u.href };
  if (u.protocol === 'http:' && LOOPBACK_HOSTS.has(u.hostname)) return { ok: true, value: u.href };
  return {
    ok: false,
    error: 'invalid_redirect_uri',
    message:
      'redirect_uris must be https URLs or http URLs on the loopback interface (127.0.0.1, [::1], localhost).',
  };
}

/**
 * Whether a redirect URI in an authorization request is one the client registered: exactly, or,
 * for loopback http, with another port (RFC 8252 §7.3: a native app listens on whatever port is free).
 */
export function redirectUriRegistered(requested: string, registered: readonly string[]): boolean {
  if (registered.includes(requested)) return true;
  let r: URL;
  try {
    r = new URL(requested);
  } catch {
    return false;
  }
  if (r.protocol !== 'http:' || !LOOPBACK_HOSTS.has(r.hostname)) return false;
  return registered.some((one) => {
    const u = new URL(one);
    return (
      u.protocol === 'http:' &&
      u.hostname === r.hostname &&
      u.pathname === r.pathname &&
      u.search === r.search
    );
  });
}

export interface ClientRegistration {
  name: string;
  redirectUris: string[];
}

/** RFC 7591 §2 client metadata, as far as a public authorization-code client needs it. */
export function checkRegistration(body: unknown): Checked<ClientRegistration> {
  const bad = (message: string): Checked<ClientRegistration> => ({
    ok: false,
    error: 'invalid_client_metadata',
    message,
  });
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return bad('The body must be a JSON object.');
  const m = body as Record<string, unknown>;
  const uris = m.redirect_uris;
  if (!Array.isArray(uris) || uris.length === 0 || uris.length > MAX_REDIRECT_URIS)
    return bad(`redirect_uris must list 1 to ${MAX_REDIRECT_URIS} URIs.`);
  const redirectUris: string[] = [];
  for (const one of uris) {
    if (typeof one !== 'string') return bad('redirect_uris must be strings.');
    const c = checkClientRedirectUri(one);
    if (!c.ok) return c;
    redirectUris.push(c.value);
  }
  const method = m.token_endpoint_auth_method;
  if (method !== undefined && method !== 'none')
    return bad('Only public clients are registered here: token_endpoint_auth_method must be "none".');
  const grants = m.grant_types;
  if (
    grants !== undefined &&
    (!Array.isArray(grants) || grants.some((g) => g !== 'authorization_code' && g !== 'refresh_token'))
  )
    return bad('grant_types may hold only "authorization_code" and "refresh_token".');
  const responses = m.response_types;
  if (responses !== undefined && (!Array.isArray(responses) || responses.some((r) => r !== 'code')))
    return bad('response_types may hold only "code".');
  const rawName = typeof m.client_name === 'string' ? m.client_name : '';
  // The name is shown on the consent page: printable, bounded.
  const name = rawName
    .replace(/[\p{Cc}\p{Cf}]/gu, '')
    .trim()
    .slice(0, MAX_CLIENT_NAME);
  return { ok: true, value: { name: name || 'Unnamed MCP client', redirectUris } };
}
