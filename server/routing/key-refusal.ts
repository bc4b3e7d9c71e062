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
