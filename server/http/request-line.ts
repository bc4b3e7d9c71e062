import type { FastifyBaseLogger } from 'fastify';
import { withoutPathKeys } from '../core/url-secrets';

/**
 * The one JSON line a request that is no interception gets (metered requests get the recorder's).
 * Written by fastify's onResponse hook and by the provider lane, which must write the same line.
 */
export function logRequestLine(
  log: FastifyBaseLogger,
  line: {
    method: string;
    route: string | null;
    /** The URL as sent: named (without its query, at most 256 characters) when no route matched. */
    url?: string;
    statusCode: number;
    elapsedMs: number;
    userId: string | null;
  },
): void {
  log.info(
    {
      method: line.method,
      route: line.route,
      // A 404's line names what was asked for, which a null route does not. Not the query: a
      // client's credential may be in it (`?key=`).
      ...(line.route === null && line.url !== undefined ? { path: pathOf(line.url) } : {}),
      statusCode: line.statusCode,
      durationMs: Math.round(line.elapsedMs * 100) / 100,
      userId: line.userId,
    },
    'request',
  );
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  const path = withoutPathKeys(q === -1 ? url : url.slice(0, q));
  return path.length > 256 ? `${path.slice(0, 256)}…` : path;
}
