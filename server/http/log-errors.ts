import { err as standardErr } from 'pino-std-serializers';
import { withoutUrlSecrets } from '../core/url-secrets';

function scrub(v: unknown, depth: number): unknown {
  if (typeof v === 'string') return withoutUrlSecrets(v);
  if (depth > 4 || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => scrub(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = scrub(x, depth + 1);
  return out;
}

/** What pino writes for an error. */
export interface LoggedError {
  [key: string]: unknown;
  type: string;
  message: string;
  stack: string;
}

/** pino's error serializer, its strings (message, stack, causes) without URL credentials. */
export function logError(e: Error): LoggedError {
  return scrub(standardErr(e), 0) as LoggedError;
}
