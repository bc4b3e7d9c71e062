import type { FastifyBaseLogger } from 'fastify';

/**
 * The one JSON line a request that is no interception gets (metered requests get the recorder's).
 * Written by fastify's onResponse hook and by the provider lane, which must write the same line.
 */
export function logRequestLine(
  log: FastifyBaseLogger,
  line: {
    method: string;
    route: string | null;
    statusCode: number;
    elapsedMs: number;
    userId: string | null;
  },
): void {
  log.info(
    {
      method: line.method,
      route: line.route,
      statusCode: line.statusCode,
      durationMs: Math.round(line.elapsedMs * 100) / 100,
      userId: line.userId,
    },
    'request',
  );
}
