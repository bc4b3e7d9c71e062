import { type BridgeErrorBody, ERROR_CODES, type ErrorCode } from '../shared/errors';

/**
 * Codes of failures no client receives as such: they stop the start (exit 2) or are logged with
 * the cause, and a client sees the registry's answer named in `answer` (if any). Part of the one
 * registry: docs/errors.md lists them, a test keeps the two in sync.
 */
export const SERVER_ERROR_CODES = {
  invalid_config: { answer: null, message: 'A setting has a bad value; the bridge does not start.' },
  mcp_invalid_server: {
    answer: 'invalid_request',
    message:
      'An MCP server definition cannot be used: over the API it is refused, in the config file it stops the start.',
  },
  upstream_idle_timeout: {
    answer: 'upstream_timeout',
    message: 'The provider sent nothing for longer than the idle timeout mid-response.',
  },
} as const satisfies Record<string, { answer: ErrorCode | null; message: string }>;

export type ServerErrorCode = keyof typeof SERVER_ERROR_CODES;

/** An error the bridge answers with: a stable code, an HTTP status and, when there is one, the cause. */
/** Marks a BridgeError whichever copy of this module made it (see `Symbol.hasInstance` below). */
const BRAND = Symbol.for('aibridge.BridgeError');

/**
 * Whether the same request may succeed if sent again: a timeout, a per-minute limit or keys cooling
 * down (each with `retry-after`), or any 5xx. Other 4xx refusals stand until something changes.
 */
function retryable(code: ErrorCode, status: number): boolean {
  if (status >= 500) return true;
  return code === 'request_timeout' || code === 'rate_limited' || code === 'upstream_keys_cooling';
}

export class BridgeError extends Error {
  /**
   * Modules loaded on demand (the PostgreSQL store, `await import(...)`) may get their own copy of
   * this module under a TypeScript loader (the tests' tsx), and with it another class: a brand
   * keeps `instanceof` true for a BridgeError from either copy, so none is taken for a bug.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as { [BRAND]?: boolean })[BRAND] === true;
  }

  readonly code: ErrorCode;
  readonly status: number;
  /** Headers the answer carries, e.g. `retry-after`. */
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    message?: string,
    options?: { cause?: unknown; headers?: Record<string, string> },
  ) {
    super(message ?? ERROR_CODES[code].message, options);
    this.name = 'BridgeError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    // The code in a header too: Anthropic's error shape has no field for it, so on /anthropic a
    // script could not tell a spent budget from a per-minute limit (both `rate_limit_error`).
    this.headers = { 'x-aibridge-error-code': code, ...options?.headers };
    // A refusal that a retry cannot change says so: the official SDKs and Claude Code honour it,
    // and without it Claude Code retried a bad key for two minutes in silence.
    // A refusal that says when to come back (a budget resetting within a minute) is left to say so.
    if (
      !retryable(code, this.status) &&
      this.headers['x-should-retry'] === undefined &&
      this.headers['retry-after'] === undefined
    )
      this.headers['x-should-retry'] = 'false';
    Object.defineProperty(this, BRAND, { value: true });
  }

  toBody(): BridgeErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}

export function isBridgeError(err: unknown): err is BridgeError {
  return err instanceof BridgeError;
}

/** Fastify's own errors (validation, body limit, content type) mapped onto bridge codes. */
export function fromFastifyError(err: unknown): BridgeError {
  if (isBridgeError(err)) return err;
  const e = err as { code?: string; statusCode?: number; validation?: unknown; message?: string };
  if (e.validation) return new BridgeError('invalid_request', e.message, { cause: err });
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new BridgeError('body_too_large', undefined, { cause: err });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new BridgeError('unsupported_media_type', undefined, { cause: err });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new BridgeError('invalid_json', undefined, { cause: err });
  }
  if (e.statusCode === 400 || (err instanceof SyntaxError && e.message?.includes('JSON'))) {
    return new BridgeError('invalid_json', undefined, { cause: err });
  }
  if (e.statusCode === 413) return new BridgeError('body_too_large', undefined, { cause: err });
  if (e.statusCode === 415) return new BridgeError('unsupported_media_type', undefined, { cause: err });
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new BridgeError('invalid_request', e.message, { cause: err });
  }
  return new BridgeError('internal_error', undefined, { cause: err });
}
