/**
 * Google's reasons (`error.details[].reason`) that say the key or its project is refused whatever
 * the request asks: a leaked, blocked or expired key, an API turned off, a suspended consumer.
 */
const GOOGLE_KEY_REASONS: ReadonlySet<string> = new Set([
  'API_KEY_INVALID',
  'API_KEY_EXPIRED',
  'API_KEY_SERVICE_BLOCKED',
  'API_KEY_HTTP_REFERRER_BLOCKED',
  'API_KEY_IP_ADDRESS_BLOCKED',
  'API_KEY_ANDROID_APP_BLOCKED',
  'API_KEY_IOS_APP_BLOCKED',
  'SERVICE_DISABLED',
  'CONSUMER_SUSPENDED',
  'CONSUMER_INVALID',
  'BILLING_DISABLED',
]);

/** Messages that name the key, its account or project as the one refused (Anthropic, OpenAI, Google). */
const KEY_MESSAGE =
  /reported as leaked|api key (?:not valid|expired|is invalid|has been (?:disabled|revoked))|(?:organization|organisation|account|project|workspace) (?:has been|is) (?:disabled|suspended|deactivated)|has not been used in project|billing (?:is )?(?:disabled|not enabled)/i;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Whether a provider's 403 body says the key itself is refused. Only then is the 403 the key's: a
 * 403 can also answer what a member asked for (a model, file or cached content the organisation's
 * project may not use), and taking keys out on that let one member's requests empty a pool.
 * Bodies come in each API's error shape (`{error: {message, details?}}`, Anthropic's
 * `{type: "error", error: {…}}`), or as Gemini's JSON array around one.
 */
export function keyRefusedIn(body: unknown): boolean {
  const top = Array.isArray(body) ? body[0] : body;
  const error = isObject(top) ? top.error : undefined;
  if (!isObject(error)) return false;
  const details = Array.isArray(error.details) ? error.details : [];
  if (details.some((d) => isObject(d) && typeof d.reason === 'string' && GOOGLE_KEY_REASONS.has(d.reason)))
    return true;
  return typeof error.message === 'string' && KEY_MESSAGE.test(error.message);
}

/** The error object of an answer's body, in each API's shape (see keyRefusedIn). */
function errorOf(body: unknown): Record<string, unknown> | undefined {
  const top = Array.isArray(body) ? body[0] : body;
  const error = isObject(top) ? top.error : undefined;
  return isObject(error) ? error : undefined;
}

/**
 * An account out of money: Anthropic's `billing_error` (402) or its 400 "credit balance is too low",
 * OpenAI's 429 of type `insufficient_quota` (no wait mends it). Every request on that key fails until
 * someone pays, whatever it asks. Not the words "exceeded your current quota" alone: Google says
 * them of a per-minute quota too, with a RetryInfo to wait for.
 */
const NO_CREDIT = /credit balance is too low/i;

/**
 * A refusal of what this request asks, not of the key: OpenAI's 401 for a restricted key without
 * the scope an endpoint needs ("Missing scopes: api.responses.write"), and its 429 for one request
 * larger than the whole per-minute token limit ("Request too large … on tokens per min").
 */
const MISSING_SCOPE = /missing scopes?:|insufficient permissions for this operation/i;
const TOO_LARGE = /^request too large for /i;

/**
 * Whose fault an organisation key's error answer is, read from its body: `key` when the key or its
 * account is refused whatever the request (revoked, leaked, out of credit), so other keys and
 * targets are tried and it is taken out; `request` when it refuses only what was asked, so nothing
 * is held against the key, the instance or its breaker; undefined for the status's usual meaning
 * (a 429 is a rate limit that passes, a 400 the request's mistake).
 */
export function blameOf(status: number, body: unknown): 'key' | 'request' | undefined {
  const error = errorOf(body);
  const message = typeof error?.message === 'string' ? error.message : '';
  const kind = `${typeof error?.type === 'string' ? error.type : ''} ${typeof error?.code === 'string' ? error.code : ''}`;
  if (status === 401) return MISSING_SCOPE.test(message) ? 'request' : 'key';
  if (status === 403) return keyRefusedIn(body) ? 'key' : 'request';
  if (status === 402) return 'key';
  // Google answers a key that is not valid with a 400 (`API_KEY_INVALID`), not a 401.
  if (status === 400 && (/\bbilling_error\b/.test(kind) || NO_CREDIT.test(message) || keyRefusedIn(body)))
    return 'key';
  if (status === 429) {
    if (/\b(?:insufficient_quota|billing_error)\b/.test(kind)) return 'key';
    if (TOO_LARGE.test(message)) return 'request';
  }
  return undefined;
}

/** Statuses whose body is read for `blameOf` before the answer goes anywhere. */
export const BLAMED_STATUSES: ReadonlySet<number> = new Set([400, 401, 402, 403, 429]);
