import { anthropicErrorBody } from '../anthropic/errors';
import { isObject } from '../common';
import { retryDelayOf, type VertexError } from '../google-cloud';

/** Seconds a throttled client waits when Vertex gives no hint (neither `retry-after` nor RetryInfo). */
const DEFAULT_RETRY_AFTER = '1';

/**
 * Maps a Vertex error answer into Anthropic's shape. Vertex answers in Google's shape
 * `{"error": {"code": 429, "message": …, "status": "RESOURCE_EXHAUSTED", "details": [...]}}`
 * (streaming endpoints wrap it in an array) for what it refuses itself — quota, permissions, an
 * unknown model — and relays Claude's own errors, already in Anthropic's shape, as they are.
 */
export function mapVertexError(status: number, raw: Buffer, retryAfter?: string): VertexError {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    json = undefined;
  }
  const code = status >= 400 ? status : 502;
  const retry = (hint: string | undefined) =>
    code === 429 ? { retryAfter: retryAfter ?? hint ?? DEFAULT_RETRY_AFTER } : {};
  if (isObject(json) && json.type === 'error' && isObject(json.error))
    // Claude's own error, already in Anthropic's shape: relayed as sent (no body of ours).
    return { status: code, ...retry(undefined) };
  const google = Array.isArray(json) ? json[0] : json;
  const e = isObject(google) && isObject(google.error) ? google.error : undefined;
  if (e) {
    const name = typeof e.status === 'string' ? e.status : '';
    const message = typeof e.message === 'string' ? e.message : 'Vertex AI refused the request.';
    const text = name ? `${name}: ${message}` : message;
    return { status: code, ...retry(retryDelayOf(e.details)), body: anthropicErrorBody(code, text) };
  }
  const text = raw.toString('utf8').slice(0, 500) || 'Vertex AI refused the request.';
  return { status: code, ...retry(undefined), body: anthropicErrorBody(code, text) };
}
