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

/**
 * Messages that name the key, its account or project as the one refused (Anthropic, OpenAI,
 * Google, AWS). Matched from the message's start: providers quote what a request sent (an unknown
 * field's name: "`<field>`: Extra inputs are not permitted", "Unknown name \"<field>\""), so words
 * found anywhere in a message could be a member's, and a field named after them took every key of
 * a pool out for everyone.
 */
const KEY_MESSAGE =
  /^(?:your api key (?:was )?reported as leaked|api key (?:not valid|expired|is invalid|has been (?:disabled|revoked))|this (?:organization|organisation|account|project|workspace) (?:has been|is) (?:disabled|suspended|deactivated)|the security token included in the request is (?:invalid|expired)|the request signature we calculated does not match)/i;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The error object of an answer's body, in each API's shape: `{error: {message, details?}}`,
 * Anthropic's `{type: "error", error: {…}}`, Gemini's JSON array around one, or AWS's bare
 * `{message}` (Bedrock).
 */
function errorOf(body: unknown): Record<string, unknown> | undefined {
  const top = Array.isArray(body) ? body[0] : body;
  if (!isObject(top)) return undefined;
  if (isObject(top.error)) return top.error;
  return typeof top.message === 'string' ? top : undefined;
}

/**
 * Whether a provider's refusal says the key itself is refused: Google's `details[].reason`, or a
 * message that starts by saying so (KEY_MESSAGE). Only then is a 403 the key's: a 403 can also
 * answer what a member asked for (a model, file or cached content the organisation's project may
 * not use), and taking keys out on that let one member's requests empty a pool.
 */
export function keyRefusedIn(body: unknown): boolean {
  const error = errorOf(body);
  if (!error) return false;
  const details = Array.isArray(error.details) ? error.details : [];
  if (details.some((d) => isObject(d) && typeof d.reason === 'string' && GOOGLE_KEY_REASONS.has(d.reason)))
    return true;
  return typeof error.message === 'string' && KEY_MESSAGE.test(error.message.trim());
}

/**
 * An account out of money, in Anthropic's own fixed sentence (its 400 for it), whole: only the
 * provider writes all of it. Its `billing_error` type, and OpenAI's 429 of type
 * `insufficient_quota` (no wait mends it), say it in fields no request sets. Not the words
 * "exceeded your current quota" alone: Google says them of a per-minute quota too, with a
 * RetryInfo to wait for.
 */
const NO_CREDIT =
  /^Your credit balance is too low to access the (?:Anthropic|Claude) API\. Please go to Plans (?:&|and) Billing to upgrade or purchase credits\.$/;

/**
 * A refusal of what this request asks, not of the key: OpenAI's 401 for a restricted key without
 * the scope an endpoint needs ("Missing scopes: api.responses.write"), and its 429 for one request
 * larger than the whole per-minute token limit ("Request too large … on tokens per min").
 */
const MISSING_SCOPE = /^you have insufficient permissions for this operation\b/i;
export const TOO_LARGE = /^request too large for /i;

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
  // A 402 alone is no proof: OpenRouter's says "fewer max_tokens" would do (the request's).
  if (status === 402 && /\bbilling_error\b/.test(kind)) return 'key';
  // Google answers a key that is not valid with a 400 (`API_KEY_INVALID`), not a 401.
  if (
    status === 400 &&
    (/\bbilling_error\b/.test(kind) || NO_CREDIT.test(message.trim()) || keyRefusedIn(body))
  )
    return 'key';
  if (status === 429) {
    if (/\b(?:insufficient_quota|billing_error)\b/.test(kind)) return 'key';
    if (TOO_LARGE.test(message)) return 'request';
  }
  return undefined;
}

/** Statuses whose body is read for `blameOf` before the answer goes anywhere. */
export const BLAMED_STATUSES: ReadonlySet<number> = new Set([400, 401, 402, 403, 429]);
