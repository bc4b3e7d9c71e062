import { isObject } from '../common';
import { statusName } from '../gemini/errors';
import { retryDelayOf, type VertexError } from '../google-cloud';

/**
 * Vertex already answers in Google's shape `{"error": {"code", "message", "status", "details"}}`,
 * which the genai SDKs and Gemini CLI read, so an error goes as sent; a streaming endpoint's error
 * wrapped in an array (`[{"error": …}]`) is unwrapped, and a body that is not Google's (a load
 * balancer's HTML page) is put in Google's shape.
 */
export function mapVertexGeminiError(status: number, raw: Buffer, retryAfter?: string): VertexError {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    json = undefined;
  }
  const code = status >= 400 ? status : 502;
  const first: unknown = Array.isArray(json) ? json[0] : json;
  const e = isObject(first) && isObject(first.error) ? first.error : undefined;
  const retry = code === 429 ? (retryAfter ?? retryDelayOf(e?.details)) : undefined;
  const out = { status: code, ...(retry ? { retryAfter: retry } : {}) };
  if (e) return first === json ? out : { ...out, body: first };
  const message = raw.toString('utf8').slice(0, 500) || 'Vertex AI refused the request.';
  return { ...out, body: { error: { code, message, status: statusName(code) } } };
}
