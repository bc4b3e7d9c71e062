/**
 * The bridge's own error codes. Each code is stable: scripts match on it. The HTTP status is what
 * the bridge answers with; on provider routes the same error is rendered in that provider's shape.
 * docs/errors.md lists every code; a test keeps the two in sync.
 */
export const ERROR_CODES = {
  invalid_request: { status: 400, message: 'The request is malformed.' },
  invalid_json: { status: 400, message: 'The request body is not valid JSON.' },
  unsupported_parameter: {
    status: 400,
    message: 'The bridge does not accept a parameter of this request: it could not meter or govern it.',
  },
  invalid_model: {
    status: 400,
    message: 'The model name is empty, longer than 256 bytes, or has characters no model id uses.',
  },
  invalid_provider_key: {
    status: 400,
    message: 'A provider key is invalid; the message names the field.',
  },
  invalid_cursor: { status: 400, message: 'The cursor is not one this bridge issued.' },
  wrong_base_url: {
    status: 400,
    message:
      'The client was given a base URL with a part missing or too many; the message names the one to give.',
  },
  invalid_tool_policy: {
    status: 400,
    message: 'A tool-policy rule is invalid; the message names the rule index and field.',
  },
  invalid_routes: {
    status: 400,
    message: 'The routing table is invalid; the message names the entry (`routes.<model>[<i>]`).',
  },
  oidc_state_invalid: {
    status: 400,
    message: 'This sign-in was not started here, was already used, or is more than 10 minutes old.',
  },
  unauthorized: { status: 401, message: 'A valid bridge key is required.' },
  oidc_token_invalid: { status: 401, message: "The identity provider's answer failed validation." },
  user_deactivated: {
    status: 401,
    message: 'The identity provider deactivated this user; their keys and sessions no longer work.',
  },
  forbidden: { status: 403, message: 'This key may not do that.' },
  csrf_refused: {
    status: 403,
    message: 'A signed-in browser request without the CSRF header, or from another origin.',
  },
  model_denied: { status: 403, message: "This model is not allowed for the caller's team." },
  model_unpriced: {
    status: 403,
    message:
      'The model has no price, and the bridge serves only priced models (AIBRIDGE_UNPRICED_MODELS=block).',
  },
  byok_not_allowed: {
    status: 403,
    message:
      "The request carries the user's own provider credential, which the caller's team may not use (or this provider instance cannot take).",
  },
  key_signin_disabled: {
    status: 403,
    message: 'The admin page takes single sign-on only (AIBRIDGE_ADMIN_KEY_SIGNIN=false).',
  },
  key_not_renewable: {
    status: 403,
    message: 'Only keys minted by a device sign-in can be renewed.',
  },
  sign_in_renewal_ended: {
    status: 403,
    message:
      "The key's renewals have ended (AIBRIDGE_DEVICE_KEY_MAX_DAYS): sign in through the identity provider to approve a device.",
  },
  oidc_denied: { status: 403, message: 'The identity provider did not sign you in.' },
  oidc_email_unverified: { status: 403, message: 'The identity provider has not verified this email.' },
  oidc_not_allowed: {
    status: 403,
    message: 'This account is not in an email domain or group allowed to use the bridge.',
  },
  not_found: { status: 404, message: 'No such route.' },
  oidc_not_configured: { status: 404, message: 'Single sign-on is not configured on this bridge.' },
  user_not_found: { status: 404, message: 'No user with that email or id.' },
  key_not_found: { status: 404, message: 'No key with that id.' },
  budget_not_found: { status: 404, message: 'No budget with that id.' },
  rate_limit_not_found: { status: 404, message: 'No rate limit with that id.' },
  price_not_found: { status: 404, message: 'No price override for that model.' },
  policy_not_found: { status: 404, message: 'No model policy for that team.' },
  alias_not_found: { status: 404, message: 'No stored model alias with that name.' },
  model_not_found: { status: 404, message: 'No model with that id is available to the caller.' },
  response_not_found: {
    status: 404,
    message: "No stored response with that id is the caller's.",
  },
  conversation_not_found: {
    status: 404,
    message: 'No stored conversation with that id is open to the caller.',
  },
  item_not_found: {
    status: 404,
    message: "No stored item with that id is the caller's.",
  },
  mcp_server_not_found: { status: 404, message: 'No MCP server with that name.' },
  provider_not_found: { status: 404, message: 'No provider instance with that name.' },
  provider_key_not_found: { status: 404, message: 'The provider instance has no key with that name.' },
  provisioner_not_found: { status: 404, message: 'No provisioner with that id.' },
  user_code_not_found: {
    status: 404,
    message: 'No device sign-in is waiting for that code (wrong, expired or already answered).',
  },
  scim_group_not_found: { status: 404, message: 'No SCIM group with that id.' },
  request_timeout: {
    status: 408,
    message: 'The request did not arrive in time; the connection is closed.',
  },
  provider_key_exists: { status: 409, message: 'The provider instance already has a key with that name.' },
  provider_key_in_file: {
    status: 409,
    message: 'The key comes from the providers file: disable it here, or remove it from the file.',
  },
  user_exists: { status: 409, message: 'A user with that email already exists.' },
  user_inactive: {
    status: 409,
    message:
      'The identity provider deactivated this user: no key is issued to them until it reactivates them.',
  },
  too_many_keys: {
    status: 409,
    message: 'The user holds as many live keys as allowed (AIBRIDGE_KEYS_PER_USER); revoke one first.',
  },
  last_admin: { status: 409, message: 'The last admin cannot stop being an admin.' },
  scim_group_exists: { status: 409, message: 'A SCIM group with that displayName already exists.' },
  body_too_large: { status: 413, message: 'The request body is larger than the bridge accepts.' },
  unsupported_media_type: { status: 415, message: 'The bridge does not accept that content type.' },
  budget_exceeded: { status: 429, message: 'A budget that blocks requests is spent until it resets.' },
  rate_limited: {
    status: 429,
    message: 'Too many requests or tokens per minute; retry after the time given.',
  },
  upstream_keys_cooling: {
    status: 429,
    message:
      'Every key of the provider instance is cooling down or at its limit; retry after the time given.',
  },
  internal_error: { status: 500, message: 'The bridge failed unexpectedly.' },
  upstream_unreachable: { status: 502, message: 'The provider could not be reached.' },
  upstream_auth_failed: {
    status: 502,
    message: 'Every key of the provider instance was refused by the provider (401/403).',
  },
  upstream_protocol_error: {
    status: 502,
    message: 'The provider answered with something the bridge could not read.',
  },
  provider_not_configured: { status: 503, message: 'The bridge has no upstream key for this provider.' },
  circuit_open: {
    status: 503,
    message: 'The provider has been failing; the bridge is giving it a moment before trying again.',
  },
  shutting_down: { status: 503, message: 'The bridge is shutting down.' },
  server_busy: {
    status: 503,
    message:
      'The bridge holds as many request bodies as it allows (AIBRIDGE_BODY_BYTES_IN_FLIGHT); retry in a moment.',
  },
  oidc_unavailable: {
    status: 503,
    message: 'The identity provider cannot be reached; try again shortly, or sign in with a key.',
  },
  mcp_no_credentials_key: {
    status: 503,
    message: 'The bridge has no AIBRIDGE_MCP_CREDENTIALS_KEY, so it cannot store MCP credentials.',
  },
  mcp_oauth_needs_public_url: {
    status: 503,
    message:
      "Per-user OAuth needs AIBRIDGE_PUBLIC_URL when the bridge is reached by another name than localhost: the address the code comes back to is not taken from a request's Host header.",
  },
  provider_key_not_storable: {
    status: 503,
    message: 'The bridge has no AIBRIDGE_MCP_CREDENTIALS_KEY, so it cannot store provider keys.',
  },
  audit_unavailable: {
    status: 503,
    message:
      'The audit store is not taking writes; requests are refused until it does (AIBRIDGE_AUDIT_FAILURE=closed).',
  },
  store_unavailable: {
    status: 503,
    message: 'The bridge cannot reach its database; retry shortly.',
  },
  search_timeout: {
    status: 503,
    message: 'The read ran longer than the database allows reads (30 s) and was stopped; narrow it.',
  },
  upstream_timeout: { status: 504, message: 'The provider did not answer in time.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The shape of the bridge's own errors on `/api/...` routes. */
export interface BridgeErrorBody {
  error: { code: ErrorCode; message: string };
}

/**
 * WebSocket close codes (`GET /api/v1/events`, docs/errors.md): why the server closed the socket. 4xxx codes are the bridge's own; `final` ones mean a reconnect
 * with the same key and query would be refused again (sign in again, or fix the query).
 */
export const CLOSE_CODES = {
  /** The server is shutting down or restarting: reconnect. */
  goingAway: { code: 1001, final: false },
  /** The server failed while setting the socket up: reconnect later. */
  internalError: { code: 1011, final: false },
  /** No key, or the key is unknown, revoked or expired (also when it is revoked while connected). */
  unauthorized: { code: 4001, final: true },
  /** A member asked for someone else's events. */
  forbidden: { code: 4003, final: true },
  /** The client read too slowly and its buffer overflowed; reconnect and reload what it missed. */
  slowConsumer: { code: 4008, final: false },
  /** Too many bad keys from this address (the `closing` notice says when to retry), or too many sockets open for this user or key. */
  rateLimited: { code: 4029, final: false },
  /** A query parameter the server does not understand (unknown event type, unknown user). */
  badRequest: { code: 4400, final: true },
  /** The client sent a message: it may only answer pings (a broken client, or a flood). */
  unexpectedMessage: { code: 1008, final: true },
} as const satisfies Record<string, { code: number; final: boolean }>;

export type CloseReason = keyof typeof CLOSE_CODES;

/** The reason for a close code, or undefined for codes the bridge does not send on purpose. */
export function closeReasonOf(code: number): CloseReason | undefined {
  for (const [name, c] of Object.entries(CLOSE_CODES)) if (c.code === code) return name as CloseReason;
  return undefined;
}
