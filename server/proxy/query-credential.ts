import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { FastifyRequest } from 'fastify';
import { providerCredentialFrom } from '../identity/auth';

/**
 * An `onRequest` hook for a family whose clients may send their key in the query (Google's
 * `?key=`): the parameter is cut from the URL before any hook, log line or upstream request sees
 * it, and becomes the bridge key when no header carries one (or, beside `X-AIBridge-Key`, the
 * user's own credential). A key in a URL would otherwise be forwarded upstream next to the
 * organisation's own, and end up in access logs.
 */
export function queryCredential(param: string, header: string) {
  return async (req: FastifyRequest): Promise<void> => {
    moveQueryCredential(req.raw, req.headers, param, header);
  };
}

/**
 * Query parameters that carry a credential, by name (as Google's, OpenAI's and Azure's clients
 * write them): never forwarded upstream. A client that puts its bridge key in the URL
 * (`?key=aib_…`, a base URL pasted with one) handed it to the provider, its logs, and the trace's
 * `url.full`.
 */
const CREDENTIAL_PARAMS: ReadonlySet<string> = new Set([
  'key',
  '$key',
  'api-key',
  'api_key',
  'apikey',
  'access_token',
  'x-goog-api-key',
]);

/** A query that may hold a CREDENTIAL_PARAMS name: one of them as a name, or an escaped name. */
const MAYBE_CREDENTIAL = new RegExp(
  `(?:^|&)(?:${[...CREDENTIAL_PARAMS].map((n) => n.replace(/[$-]/g, '\\$&')).join('|')})(?:=|&|$)|%|\\+`,
  'i',
);

/**
 * Cuts credential-named parameters (CREDENTIAL_PARAMS) from a raw request's URL, after a family's
 * own query credential was moved to its header (moveQueryCredential). Idempotent.
 */
export function dropQueryCredentials(raw: IncomingMessage): void {
  const url = raw.url ?? '';
  const q = url.indexOf('?');
  // Nearly every query (Claude Code's `?beta=true`) names no credential: no split for it.
  if (q === -1 || !MAYBE_CREDENTIAL.test(url.slice(q + 1))) return;
  const pairs = url.slice(q + 1).split('&');
  const kept = pairs.filter((pair) => !CREDENTIAL_PARAMS.has(nameOf(pair).toLowerCase()));
  if (kept.length === pairs.length) return;
  raw.url = kept.length > 0 ? `${url.slice(0, q)}?${kept.join('&')}` : url.slice(0, q);
}

/** An `onRequest` hook for every provider family: dropQueryCredentials. */
export function queryCredentialsDropped() {
  return async (req: FastifyRequest): Promise<void> => {
    dropQueryCredentials(req.raw);
  };
}

/**
 * What the hook does, for a raw request (the provider lane's): idempotent, so a request the lane
 * leaves to fastify after moving the key is moved again to the same effect.
 */
export function moveQueryCredential(
  raw: IncomingMessage,
  headers: IncomingHttpHeaders,
  param: string,
  header: string,
): void {
  const url = raw.url ?? '';
  const q = url.indexOf('?');
  if (q === -1) return;
  const kept: string[] = [];
  let key: string | undefined;
  for (const pair of url.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=');
    // Google's system parameters answer to a `$` name too (`$alt`, `$fields`, `$key`).
    const decoded = nameOf(pair);
    if (decoded === param || decoded === `$${param}`) key ??= safeDecode(eq === -1 ? '' : pair.slice(eq + 1));
    else kept.push(pair);
  }
  if (key === undefined) return;
  raw.url = kept.length > 0 ? `${url.slice(0, q)}?${kept.join('&')}` : url.slice(0, q);
  // With X-AIBridge-Key beside it, the header is the user's own credential (docs/routing.md).
  if (key !== '' && !providerCredentialFrom(headers)) headers[header] = key;
}

/** A query pair's name, decoded as the provider decodes it (`%61ccess_token` is `access_token`). */
function nameOf(pair: string): string {
  const eq = pair.indexOf('=');
  return safeDecode(eq === -1 ? pair : pair.slice(0, eq));
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}
