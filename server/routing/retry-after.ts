/**
 * An upstream's `retry-after` in milliseconds from `nowMs`: delay-seconds or an HTTP date (RFC 9110
 * §10.2.3). Undefined when absent or unreadable; a date in the past is 0.
 */
export function retryAfterMs(value: string | string[] | undefined, nowMs: number): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!v) return undefined;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

/** An upstream answer's wait: OpenAI's `retry-after-ms` when given, else `retry-after`. */
export function upstreamRetryAfterMs(
  headers: Record<string, string | string[] | undefined>,
  nowMs: number,
): number | undefined {
  const ms = headers['retry-after-ms'];
  const v = (Array.isArray(ms) ? ms[0] : ms)?.trim();
  if (v && /^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v));
  return retryAfterMs(headers['retry-after'], nowMs);
}
