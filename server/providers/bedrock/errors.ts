import { anthropicErrorBody } from '../anthropic/errors';
import { isObject } from '../common';

/** An AWS error as the Anthropic client sees it: status, retry hint and Anthropic's error body. */
export interface MappedError {
  readonly status: number;
  readonly retryAfter?: string;
  readonly body: unknown;
}

/** Seconds a throttled client waits when AWS gives no hint; Bedrock's own SDK backs off about as long. */
const DEFAULT_RETRY_AFTER = '1';

/** AWS exception name (lower case, as both the JSON and the event-stream forms spell it) → the client's status. */
const STATUS: Readonly<Record<string, number>> = {
  throttlingexception: 429,
  servicequotaexceededexception: 429,
  validationexception: 400,
  modelnotreadyexception: 529,
  serviceunavailableexception: 503,
  serviceunavailable: 503,
  accessdeniedexception: 403,
  // The credential refused (a rotated secret, a revoked key, an expired session): AWS's 403s, which
  // are what a 401 is elsewhere. Said as one, the bridge fails over and alerts (key-refusal.ts),
  // where a 403 is taken as the request's (a model the account may not use).
  unrecognizedclientexception: 401,
  invalidsignatureexception: 401,
  expiredtokenexception: 401,
  incompletesignatureexception: 401,
  resourcenotfoundexception: 404,
  modeltimeoutexception: 504,
  modelstreamerrorexception: 500,
  modelerrorexception: 500,
  internalserverexception: 500,
};

/** `ThrottlingException:http://internal.amazon.com/…` or `com.amazon…#ThrottlingException` → `ThrottlingException`. */
export function exceptionName(raw: string): string {
  return (raw.split(':')[0] ?? '').split('#').pop() ?? '';
}

/** Maps an AWS exception (its name, the status AWS sent, its message) into Anthropic's error shape. */
export function mapAwsError(
  name: string,
  awsStatus: number,
  message: string,
  retryAfter?: string,
): MappedError {
  const key = name.toLowerCase();
  const status = Object.hasOwn(STATUS, key) ? STATUS[key]! : awsStatus >= 400 ? awsStatus : 502;
  const said = withoutSigningDetail(message);
  const text = name ? `${name}: ${said}` : said;
  return {
    status,
    ...(status === 429 ? { retryAfter: retryAfter ?? DEFAULT_RETRY_AFTER } : {}),
    body: anthropicErrorBody(status, text),
  };
}

/**
 * An AWS signature error's message goes on with the canonical request and string to sign AWS
 * expected: the signed headers in clear, the session token (`x-amz-security-token`) among them.
 * The client and the record get the sentence before it.
 */
function withoutSigningDetail(message: string): string {
  const at = message.search(/\s*The Canonical String for this request should have been/);
  return at < 0 ? message : message.slice(0, at);
}

/** The exception name and message of an AWS JSON error answer (`x-amzn-errortype` header, `__type`, `message`). */
export function awsErrorOf(errorType: string | undefined, raw: Buffer): { name: string; message: string } {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    json = undefined;
  }
  const o = isObject(json) ? json : {};
  const type = errorType ?? (typeof o.__type === 'string' ? o.__type : '');
  const message =
    typeof o.message === 'string'
      ? o.message
      : typeof o.Message === 'string'
        ? o.Message
        : raw.toString('utf8').slice(0, 500) || 'Bedrock refused the request.';
  return { name: exceptionName(type), message };
}
