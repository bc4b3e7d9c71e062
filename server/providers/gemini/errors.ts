/** Google's canonical status name (google.rpc.Code) for each HTTP status the bridge answers with. */
export function statusName(status: number): string {
  switch (status) {
    case 400:
    case 413:
      return 'INVALID_ARGUMENT';
    case 401:
      return 'UNAUTHENTICATED';
    case 403:
      return 'PERMISSION_DENIED';
    case 404:
      return 'NOT_FOUND';
    case 409:
      return 'ABORTED';
    case 429:
      return 'RESOURCE_EXHAUSTED';
    case 499:
      return 'CANCELLED';
    case 501:
      return 'UNIMPLEMENTED';
    case 503:
      return 'UNAVAILABLE';
    case 504:
      return 'DEADLINE_EXCEEDED';
    default:
      return status >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION';
  }
}

/**
 * Google's error shape, `{"error": {"code", "message", "status"}}`, which the genai SDKs and
 * Gemini CLI read. The bridge's own code (docs/errors.md) goes in the message, since the shape has
 * no field for it.
 */
export function geminiError(status: number, code: string, message: string): Record<string, unknown> {
  return { code: status, message: `${message} (${code})`, status: statusName(status) };
}

export function geminiErrorBody(
  status: number,
  code: string,
  message: string,
  headers?: Readonly<Record<string, string>>,
): unknown {
  const error = geminiError(status, code, message);
  const delay = retryDelaySeconds(code, headers);
  // google.rpc.RetryInfo: how long to wait, where Google's clients look for it. Gemini CLI ignores
  // `retry-after` and `x-should-retry`: without it a spent budget was retried for minutes.
  if (delay !== undefined)
    error.details = [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: `${delay}s` }];
  return { error };
}

/** A session cap does not reset: a wait no client takes for one to come back. */
const NO_RESET_SECONDS = 86_400;

/** Seconds until a retry can succeed: the error's `retry-after`, else a budget's reset. */
function retryDelaySeconds(
  code: string,
  headers: Readonly<Record<string, string>> | undefined,
): number | undefined {
  const after = Number(headers?.['retry-after']);
  if (Number.isFinite(after) && after > 0) return Math.ceil(after);
  if (code !== 'budget_exceeded') return undefined;
  const resets = Date.parse(headers?.['x-aibridge-budget-resets-at'] ?? '');
  return Number.isFinite(resets) ? Math.max(1, Math.ceil((resets - Date.now()) / 1000)) : NO_RESET_SECONDS;
}
