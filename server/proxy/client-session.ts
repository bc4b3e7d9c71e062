import type { IncomingHttpHeaders } from 'node:http';
import { isObject } from '../providers/common';
import type { RequestFacts } from '../providers/types';
import type { JsonObject } from '../providers/wire';

/** The header a client the bridge's extension configures carries its session in (VS Code's chat). */
export const SESSION_HEADER = 'x-aibridge-session-id';

/**
 * Copilot CLI sends no session header to a BYOK provider, but its system prompt names the
 * session's folder, `…/session-state/<session id>`, inside `<session_context>`.
 */
const COPILOT_SESSION_FOLDER =
  /<session_context>\s*Session folder: [^\n]*session-state[\\/]([0-9A-Za-z-]{8,64})/;
const SESSION_CONTEXT = '<session_context>';
/**
 * Copilot's block is a few hundred bytes. The regex runs only on this much text after the first
 * `<session_context>`: run over a whole member-chosen prompt, each repeat of the marker would
 * rescan the rest of its line (quadratic in a megabyte prompt).
 */
const SESSION_CONTEXT_WINDOW = 4096;

function texts(content: unknown): string[] {
  if (typeof content === 'string') return [content];
  if (!Array.isArray(content)) return [];
  return content.flatMap((p: unknown) => (isObject(p) && typeof p.text === 'string' ? [p.text] : []));
}

/**
 * The system text of a request in any of the wire shapes: Messages' `system`, Responses'
 * `instructions`, and the `system`/`developer` messages or items of Chat Completions and Responses.
 */
function systemTexts(body: JsonObject): string[] {
  const out = [...texts(body.system), ...texts(body.instructions)];
  const list = Array.isArray(body.messages) ? body.messages : Array.isArray(body.input) ? body.input : [];
  for (const m of list as unknown[]) {
    if (isObject(m) && (m.role === 'system' || m.role === 'developer')) out.push(...texts(m.content));
  }
  return out;
}

function copilotSession(body: JsonObject): string | null {
  for (const text of systemTexts(body)) {
    const at = text.indexOf(SESSION_CONTEXT);
    if (at === -1) continue;
    const id = COPILOT_SESSION_FOLDER.exec(text.slice(at, at + SESSION_CONTEXT_WINDOW))?.[1];
    if (id !== undefined) return id;
  }
  return null;
}

/**
 * The request's facts with its session: the session header the bridge's extension sends first,
 * then what the wire API's own headers and fields name, then, for Copilot CLI, which sends none to
 * a BYOK provider, the session folder in its prompt.
 */
export function withClientSession(
  facts: RequestFacts,
  client: string,
  headers: IncomingHttpHeaders,
  body: JsonObject,
): RequestFacts {
  const declared = headers[SESSION_HEADER];
  if (typeof declared === 'string' && declared !== '') return { ...facts, sessionId: declared };
  if (facts.sessionId !== null || client !== 'copilot-cli') return facts;
  return { ...facts, sessionId: copilotSession(body) };
}
