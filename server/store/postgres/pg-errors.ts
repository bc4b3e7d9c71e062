import { BridgeError } from '../../errors';

/** SQLSTATE too_many_connections: every connection slot of the server is taken. */
const TOO_MANY_CONNECTIONS = '53300';

/** Socket-level failures: the database is not there, not a query that went wrong. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ETIMEDOUT',
  'EPIPE',
]);

/**
 * Whether an error means the database cannot be reached (refused, gone, shutting down, not
 * accepting connections) rather than a bad query: a FATAL error (the server ends the session, e.g.
 * a database not accepting connections), SQLSTATE class 08 (connection exception), 57P0x (operator
 * intervention), 3D000 (no such database), or a connection that broke or timed out.
 */
export function isUnreachable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; severity?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : '';
  if (code === TOO_MANY_CONNECTIONS) return false;
  return (
    e.severity === 'FATAL' ||
    NETWORK_CODES.has(code) ||
    code.startsWith('08') ||
    code.startsWith('57P') ||
    code === '3D000' ||
    /Connection terminated|Client has encountered a connection error/i.test(message)
  );
}

/**
 * Whether the pool had no free connection for its whole wait (pg-pool's message for a checkout
 * that timed out in its queue; a new connection that times out is "Connection terminated due to
 * connection timeout"): the database is there and busy, and the replica answers as busy, not as
 * if the database were gone (which would fail readiness, or admit without a budget check with
 * AIBRIDGE_AUDIT_FAILURE=open).
 */
export function isPoolExhausted(err: unknown): boolean {
  const { message, code } = err as { message?: unknown; code?: unknown };
  // The server's own "too many connections" (53300, FATAL): there, and full, as the pool's wait is.
  if (code === TOO_MANY_CONNECTIONS) return true;
  return typeof message === 'string' && message === 'timeout exceeded when trying to connect';
}

/** An unreachable database becomes `store_unavailable` (503), cause kept; anything else is passed on. */
export function asStoreError(err: unknown): unknown {
  if (err instanceof BridgeError) return err;
  if (isPoolExhausted(err))
    return new BridgeError(
      'server_busy',
      'The bridge is waiting on its database for more requests than it has connections for; retry in a moment.',
      { cause: err, headers: { 'retry-after': '1' } },
    );
  if (!isUnreachable(err)) return err;
  const code = (err as { code?: unknown }).code;
  return new BridgeError(
    'store_unavailable',
    `The bridge cannot reach its database${typeof code === 'string' ? ` (${code})` : ''}; retry shortly.`,
    { cause: err },
  );
}
