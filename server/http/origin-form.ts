import type { IncomingMessage } from 'node:http';

const ABSOLUTE = /^https?:\/\/([^/?#]*)/i;

/**
 * A request target in absolute form (`POST http://host:7410/anthropic/v1/messages`, what a client
 * that takes the bridge for a forward proxy sends) made origin form, as RFC 9112 §3.2.2 has an
 * origin server accept it: its path and query become `req.url` and its authority the Host header.
 * Every path check, the provider lane and the provider routes read `req.url` as a path: an
 * absolute one was cut at the wrong place and answered with a 404 naming a path nobody sent.
 */
export function toOriginForm(req: IncomingMessage): void {
  const url = req.url;
  if (url === undefined || url.charCodeAt(0) === 0x2f) return;
  const m = ABSOLUTE.exec(url);
  if (!m) return;
  const rest = url.slice(m[0].length);
  req.url = rest.startsWith('/') ? rest : `/${rest}`;
  // Credentials in the authority (`user:pass@host`) are no part of the host.
  const host = m[1]!.slice(m[1]!.lastIndexOf('@') + 1);
  if (host !== '') req.headers.host = host;
}
