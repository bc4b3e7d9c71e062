import type { IncomingHttpHeaders } from 'node:http';

/** Codex sends its session (thread) id as `session-id` on every request of a session. */
export function sessionFromHeaders(headers: IncomingHttpHeaders): string | null {
  const v = headers['session-id'];
  return typeof v === 'string' && v !== '' ? v : null;
}
