import { createHash } from 'node:crypto';
import { isIP } from 'node:net';

/** What the user (or a link, or the environment) gave us to sign in with. */
export interface Credentials {
  url: string;
  key: string;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; message: string };

const KEY_RE = /^aib_[A-Za-z0-9_-]{43}$/;
/** A bridge key anywhere in a text (a config file the extension wrote it into); loose on length, so an odd key is caught too. */
const KEY_IN_TEXT_RE = /aib_[A-Za-z0-9_-]{16,}/;

/** Whether `text` holds a bridge key: such a text is not kept as a backup (a key must not outlive the sign-out). */
export function holdsBridgeKey(text: string): boolean {
  return KEY_IN_TEXT_RE.test(text);
}
/** Suffixes people paste by mistake: the routes agents use, or the API's. */
const ROUTE_SUFFIXES = ['/anthropic', '/openai/v1', '/openai', '/api/v1', '/healthz'];

/** The bridge's base URL: http(s), no credentials, query or fragment, no trailing slash or route. */
export function normalizeBridgeUrl(input: string): Checked<string> {
  const raw = input.trim();
  if (raw === '') return { ok: false, message: 'Enter the bridge URL, e.g. https://bridge.example.com.' };
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { ok: false, message: `"${raw}" is not a URL; it should look like https://bridge.example.com.` };
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    return { ok: false, message: 'The bridge URL must start with http:// or https://.' };
  }
  if (u.username || u.password) return { ok: false, message: 'The bridge URL must not contain credentials.' };
  if (u.search || u.hash) return { ok: false, message: 'The bridge URL must not have a query or fragment.' };
  let path = u.pathname.replace(/\/+$/, '');
  for (const s of ROUTE_SUFFIXES) {
    if (path.toLowerCase().endsWith(s)) {
      path = path.slice(0, -s.length);
      break;
    }
  }
  return { ok: true, value: `${u.protocol}//${u.host}${path}` };
}

export function checkKey(input: string): Checked<string> {
  const key = input.trim();
  if (key === '') return { ok: false, message: 'Enter your bridge key (it starts with aib_).' };
  if (!KEY_RE.test(key))
    return { ok: false, message: 'A bridge key is "aib_" followed by 43 letters, digits, - or _.' };
  return { ok: true, value: key };
}

export function checkCredentials(url: string, key: string): Checked<Credentials> {
  const u = normalizeBridgeUrl(url);
  if (!u.ok) return u;
  const k = checkKey(key);
  if (!k.ok) return k;
  return { ok: true, value: { url: u.value, key: k.value } };
}

/** The query of `<scheme>://aibridge.ai-bridge/signin?url=...&key=...`. */
export function parseSignInQuery(query: string): Checked<Credentials> {
  const q = new URLSearchParams(query);
  const url = q.get('url');
  const key = q.get('key');
  if (!url || !key) return { ok: false, message: 'The sign-in link needs both url and key.' };
  return checkCredentials(url, key);
}

/** Credentials a provisioned workspace passes in AIBRIDGE_URL and AIBRIDGE_KEY; undefined when neither is set. */
export function credentialsFromEnv(
  env: Record<string, string | undefined>,
): Checked<Credentials> | undefined {
  const url = env.AIBRIDGE_URL?.trim();
  const key = env.AIBRIDGE_KEY?.trim();
  if (!key) return undefined; // AIBRIDGE_URL alone only names the bridge to sign in to (bridgeUrlFromEnv).
  if (!url)
    return {
      ok: false,
      message: 'AIBRIDGE_KEY is set without AIBRIDGE_URL; set both to sign in automatically.',
    };
  return checkCredentials(url, key);
}

/** The bridge a workspace template or an admin's setting names, for the browser sign-in; undefined if none or invalid. */
export function defaultBridgeUrl(...candidates: (string | undefined)[]): string | undefined {
  for (const c of candidates) {
    if (!c?.trim()) continue;
    const u = normalizeBridgeUrl(c);
    if (u.ok) return u.value;
  }
  return undefined;
}

/**
 * The bridge `aibridge.url` now names when it is not the one signed in to (an admin moved everyone
 * to a new bridge): the sign-in to offer. Undefined when signed out (Sign In reads the setting
 * anyway), when the setting is blank or invalid, or names the same bridge in another spelling.
 */
export function movedBridge(signedInUrl: string | undefined, setting: unknown): string | undefined {
  if (signedInUrl === undefined || typeof setting !== 'string') return undefined;
  const next = defaultBridgeUrl(setting);
  return next !== undefined && next !== signedInUrl ? next : undefined;
}

/** Plain http to anything but this machine sends the key in clear text. */
export function isInsecureRemote(url: string): boolean {
  const u = new URL(url);
  if (u.protocol === 'https:') return false;
  const host = u.hostname.replace(/^\[|\]$/g, '');
  // This machine only as an address (127.0.0.0/8, ::1) or `localhost`: `127.example.com` is a name
  // anyone may register, and resolves wherever its owner likes.
  if (host === 'localhost' || host === '::1') return false;
  return !(isIP(host) === 4 && host.startsWith('127.'));
}

/** A one-way fingerprint of a key, to remember which one the user turned down without keeping it. */
export function keyFingerprint(key: string): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

/** The first characters of a key, as the bridge's key list shows them. */
export function keyPrefix(key: string): string {
  return `${key.slice(0, 8)}…`;
}
