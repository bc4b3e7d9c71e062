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

export function geminiErrorBody(status: number, code: string, message: string): unknown {
  return { error: geminiError(status, code, message) };
}
