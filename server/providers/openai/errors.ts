/** OpenAI's error `type` for each status the bridge answers with. */
function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  return status >= 500 ? 'server_error' : 'invalid_request_error';
}

/**
 * Refusals that stand in for OpenAI's own answer and must read exactly as it (a stored response of
 * another user, or a stored conversation, answers as an unknown id, so its existence is not
 * revealed): OpenAI sends no code. `x-aibridge-error-code` still names the bridge's.
 */
const AS_OPENAI: ReadonlySet<string> = new Set([
  'response_not_found',
  'conversation_not_found',
  'item_not_found',
]);

/** OpenAI names the field at fault for an unknown input item. */
const PARAM: ReadonlyMap<string, string> = new Map([['item_not_found', 'input']]);

/** `{"error": {message, type, param, code}}`, with the bridge's stable code as `code`. */
export function openaiError(
  status: number,
  code: string,
  message: string,
): {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
} {
  return {
    message,
    type: errorType(status),
    param: PARAM.get(code) ?? null,
    code: AS_OPENAI.has(code) ? null : code,
  };
}

export function openaiErrorBody(status: number, code: string, message: string): unknown {
  return { error: openaiError(status, code, message) };
}
