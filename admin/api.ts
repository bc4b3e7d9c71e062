import type { ErrorCode } from '../shared/errors';

/** Sent on every call: other sites cannot add it without a CORS preflight, which the bridge never grants. */
const CSRF_HEADER = { 'x-aibridge-csrf': '1' };

/** An error answer from the bridge, with its stable code (docs/errors.md). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode | 'network_error',
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

type Listener = () => void;
const signedOutListeners = new Set<Listener>();

/** Called when any call answers 401: the session ended (signed out elsewhere, key revoked, expired). */
export function onSignedOut(fn: Listener): () => void {
  signedOutListeners.add(fn);
  return () => signedOutListeners.delete(fn);
}

/**
 * Calls the bridge's API with the session cookie (same origin, so the browser attaches it; the page
 * never sees it) and the CSRF header. JSON in, JSON out; errors become ApiError.
 */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: { ...CSRF_HEADER, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (err) {
    throw new ApiError(0, 'network_error', `The bridge could not be reached: ${(err as Error).message}`);
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const e = (parsed as { error?: { code?: ErrorCode; message?: string } } | undefined)?.error;
    if (res.status === 401 && !path.endsWith('/session')) for (const fn of signedOutListeners) fn();
    throw new ApiError(res.status, e?.code ?? 'internal_error', e?.message ?? `HTTP ${res.status}`);
  }
  return parsed as T;
}

/** A query string from the set fields of `params` (empty ones are left out). */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
