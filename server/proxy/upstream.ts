import { Agent, errors as undiciErrors } from 'undici';
import type { TimeoutConfig } from '../config';
import { BridgeError } from '../errors';

/** One connection pool for all upstreams, with the configured timeouts. */
export function createUpstreamAgent(t: TimeoutConfig): Agent {
  return new Agent({
    connect: { timeout: t.connectMs },
    headersTimeout: t.headersMs,
    bodyTimeout: t.idleMs,
    keepAliveTimeout: 30_000,
  });
}

/** Why an upstream exchange failed, as a gateway error that keeps the cause. */
export function upstreamFailure(err: unknown): BridgeError {
  if (
    err instanceof undiciErrors.ConnectTimeoutError ||
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError
  ) {
    return new BridgeError(
      'upstream_timeout',
      `The provider did not answer in time (${(err as Error).message}).`,
      {
        cause: err,
      },
    );
  }
  const code = (err as { code?: string }).code ?? '';
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new BridgeError('upstream_timeout', undefined, { cause: err });
  }
  return new BridgeError(
    'upstream_unreachable',
    `The provider could not be reached (${code || (err as Error).message}).`,
    {
      cause: err,
    },
  );
}
