import type { InterceptionError } from '../../shared/interception';
import type { RequestFacts } from '../core/facts';
import type { JsonObject } from './wire';

/** Longest prompt kept on a record, in characters. */
const PROMPT_LIMIT = 64 * 1024;

/** `mcp__<server>__<tool>` is how agents name MCP tools; the server part is worth its own field. */
export function mcpServerOf(toolName: string): string | null {
  if (!toolName.startsWith('mcp__')) return null;
  const rest = toolName.slice(5);
  const end = rest.indexOf('__');
  return end > 0 ? rest.slice(0, end) : null;
}

/** Tool arguments as JSON where they are JSON, else the string as sent. */
/**
 * A call's arguments as an answer carries them: a string (JSON text, or free text) parsed as
 * parseArguments does; a value that is no string (an object an upstream sent as it is) kept as
 * it is, so it is judged and recorded as sent, not as `{}`; none at all, `{}`.
 */
export function argumentsOf(v: unknown): unknown {
  if (typeof v === 'string') return parseArguments(v);
  return v === undefined || v === null ? {} : v;
}

export function parseArguments(raw: string): unknown {
  if (raw.trim() === '') return {};
  try {
    return JSON.parse(raw);
  } catch {
    // Models sometimes emit arguments that are not JSON: the record keeps them as the raw text.
    return raw;
  }
}

/**
 * Tags agents wrap the context they inject into a user turn in: `<system-reminder>` (Claude Code),
 * `<environment_context>`, `<user_instructions>`, `<startup_context>`, `<turn_aborted>` (Codex),
 * `<current_datetime>`, `<system_reminder>`, `<system_notifications>` (Copilot CLI),
 * `<session_context>` (Gemini CLI's first turn: date, OS, the workspace's files). None is what the
 * developer typed.
 */
const HARNESS_TAGS = new Set([
  'session_context',
  'system-reminder',
  'system_reminder',
  'system_notifications',
  'environment_context',
  'user_instructions',
  'startup_context',
  'turn_aborted',
  'current_datetime',
]);

/** Codex puts AGENTS.md in an `<INSTRUCTIONS>` block under this heading. */
const AGENTS_MD_HEADING = /^# AGENTS\.md instructions for [^\n]*\n+/;
const OPENING_TAG = /^<([A-Za-z_-]{1,64})>/;
const CLOSING_TAG = /<\/([A-Za-z_-]{1,64})>$/;

/** The text without the harness block it starts with; undefined when it starts with none. */
function withoutLeadingBlock(text: string): string | undefined {
  const heading = AGENTS_MD_HEADING.exec(text)?.[0] ?? '';
  const body = text.slice(heading.length);
  const tag = OPENING_TAG.exec(body)?.[1];
  if (tag === undefined || !(HARNESS_TAGS.has(tag) || (heading !== '' && tag === 'INSTRUCTIONS')))
    return undefined;
  const end = body.indexOf(`</${tag}>`);
  return end < 0 ? undefined : body.slice(end + tag.length + 3).trimStart();
}

/** The text without the harness block it ends with (Claude Code appends reminders after the typed text). */
function withoutTrailingBlock(text: string): string | undefined {
  const tag = CLOSING_TAG.exec(text)?.[1];
  if (tag === undefined || !HARNESS_TAGS.has(tag)) return undefined;
  const start = text.lastIndexOf(`<${tag}>`);
  return start < 0 ? undefined : text.slice(0, start).trimEnd();
}

/**
 * The developer's own words in a text an agent sent as the user: the injected context blocks at
 * its start and end removed (Copilot CLI prefixes `<current_datetime>` to the typed text in the
 * same block). Null when nothing else is left. Index scans only: prompts can be megabytes.
 */
export function typedText(text: string): string | null {
  let rest = text.trim();
  for (;;) {
    const next = withoutLeadingBlock(rest) ?? withoutTrailingBlock(rest);
    if (next === undefined) break;
    rest = next;
  }
  if (rest === '') return null;
  return rest === text.trim() ? text : rest;
}

/** A user message's string content as a prompt; null when it is all harness context. */
export function userString(text: string): string | null {
  const typed = typedText(text);
  return typed === null ? null : capText(typed);
}

/** The user's text from a list of content parts, skipping harness context; null when there is none. */
export function userText(parts: unknown[], textTypes: ReadonlySet<string>): string | null {
  const texts: string[] = [];
  for (const p of parts) {
    if (!isObject(p) || !textTypes.has(String(p.type)) || typeof p.text !== 'string') continue;
    const typed = typedText(p.text);
    if (typed !== null) texts.push(typed);
  }
  return texts.length > 0 ? capText(texts.join('\n')) : null;
}

export function capText(text: string): string {
  return text.length > PROMPT_LIMIT ? text.slice(0, PROMPT_LIMIT) : text;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

export function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/**
 * A provider error body `{error: {type, message}}` (every provider nests it so) as a record error;
 * Google's carries a numeric `code` and names the kind in `status` (`RESOURCE_EXHAUSTED`).
 */
export function errorFromBody(status: number, body: unknown): InterceptionError {
  const inner = isObject(body) && isObject(body.error) ? body.error : undefined;
  return {
    type: str(inner?.type) ?? str(inner?.code) ?? str(inner?.status) ?? `http_${status}`,
    message: str(inner?.message) ?? `upstream answered ${status}`,
  };
}

/** The first of `keys` that holds a positive whole number. */
export function firstCount(body: Record<string, unknown>, ...keys: string[]): number | null {
  for (const k of keys) {
    const v = body[k];
    if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
  }
  return null;
}

/** Text of a tool result: a string, or the text parts of a block list. */
export function resultText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((b) => (typeof b === 'string' ? b : isObject(b) && typeof b.text === 'string' ? b.text : ''))
      .filter((t) => t !== '')
      .join('\n');
  }
  if (content === undefined || content === null) return '';
  return JSON.stringify(content);
}

/** What was added after the model's last turn: everything after the last item `isModel` says is the model's. */
export function afterLastModelTurn(
  items: unknown,
  isModel: (item: Record<string, unknown>) => boolean,
): unknown[] {
  if (!Array.isArray(items)) return [];
  let i = items.length - 1;
  while (i >= 0 && !(isObject(items[i]) && isModel(items[i] as Record<string, unknown>))) i--;
  return items.slice(i + 1);
}

/** Output text kept for full capture (the recorder cuts it there, once redacted). */
export const OUTPUT_LIMIT = 256 * 1024;
/**
 * Output text is gathered this far past the limit: a secret across the cut is redacted whole, not
 * left as a prefix too short for its rule.
 */
const OUTPUT_GATHERED = OUTPUT_LIMIT + 8 * 1024;

export function appendCapped(into: string, more: string): string {
  return into.length >= OUTPUT_GATHERED ? into : (into + more).slice(0, OUTPUT_GATHERED);
}

/**
 * The stored conversation a Responses `conversation` names: its id, given as the id or as
 * `{"id": …}`; undefined for anything else (absent, null, or malformed: conversationMalformed).
 */
export function conversationIdOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  return isObject(value) && typeof value.id === 'string' ? value.id : undefined;
}

/**
 * Why a body's `field`, meant to name a stored conversation, is refused: it is neither null nor a
 * form conversationIdOf reads, and must not go upstream unchecked, where a lenient server might
 * still take it as an id. Undefined when it names one or none.
 */
export function conversationMalformed(field: string, value: unknown): string | undefined {
  if (value === undefined || value === null || conversationIdOf(value) !== undefined) return undefined;
  return `\`${field}\` must be a conversation id, an object with the id as \`id\`, or null.`;
}

/**
 * The most stored items one request may name by reference. An agent's long history referenced item
 * by item stays well under it; each beyond what memory knows costs an owner lookup.
 */
export const MAX_INPUT_REFERENCES = 2048;

/**
 * The id by which a Responses input item makes the provider read a stored item, or undefined when
 * it carries its own content: an `item_reference` (whose `type` is optional: `{"id": …}` alone is
 * one), or a reasoning item without its `encrypted_content` (the provider fetches the reasoning it
 * stored). An id that is not a string is returned as it is, for referencesMalformed to refuse.
 */
function referenceOf(item: unknown): unknown {
  if (!isObject(item) || item.id === undefined) return undefined;
  const t = item.type;
  // Null and empty count as absent: a lenient reading must not turn a reference into content.
  const absent = (v: unknown): boolean => v === undefined || v === null || v === '';
  if (t === 'item_reference' || (absent(t) && absent(item.role))) return item.id;
  if (t === 'reasoning' && (typeof item.encrypted_content !== 'string' || item.encrypted_content === ''))
    return item.id;
  return undefined;
}

/** The stored items a Responses `input` names by id alone (referenceOf), each once. */
export function inputReferences(input: unknown): string[] | undefined {
  if (!Array.isArray(input)) return undefined;
  let ids: Set<string> | undefined;
  for (const item of input as unknown[]) {
    const id = referenceOf(item);
    if (typeof id !== 'string') continue;
    // Most inputs name none: no set for them.
    if (ids === undefined) ids = new Set();
    ids.add(id);
  }
  return ids === undefined ? undefined : [...ids];
}

/**
 * Why a Responses `input`'s references are refused before they are checked: one whose id is not a
 * string (a lenient server might still read it as one), or more than MAX_INPUT_REFERENCES.
 */
export function referencesMalformed(input: unknown): string | undefined {
  if (!Array.isArray(input)) return undefined;
  let n = 0;
  for (const item of input as unknown[]) {
    const id = referenceOf(item);
    if (id === undefined) continue;
    if (typeof id !== 'string')
      return 'An input item that names a stored item (`item_reference`, or a reasoning item without `encrypted_content`) must give its `id` as a string.';
    if (++n > MAX_INPUT_REFERENCES)
      return `The bridge accepts at most ${MAX_INPUT_REFERENCES} input items that name a stored item by id in one request; send the items themselves.`;
  }
  return undefined;
}

/** Server-side tools run by the provider, whose results add input the body does not show. */
const SERVER_TOOL =
  /^(web_search|web_fetch|code_execution|code_interpreter|file_search|computer|bash_|text_editor|image_generation|mcp$)/;

/**
 * Why a request's real input may be larger than its body, for the budget estimate: the API
 * expands references the bridge cannot see. Walks the body once, bounded in depth.
 */
export function inputBeyondBody(body: JsonObject): string[] {
  const why = new Set<string>();
  if (typeof body.previous_response_id === 'string') why.add('previous_response_id');
  if (body.conversation !== undefined && body.conversation !== null) why.add('conversation');
  // Responses' reusable prompt: the provider adds the stored template's messages.
  if (isObject(body.prompt) && body.prompt.id !== undefined) why.add('stored prompt');
  // Chat Completions' search models: the provider searches and reads the results as input.
  if (body.web_search_options !== undefined && body.web_search_options !== null)
    why.add('web_search_options');
  if (Array.isArray(body.tools)) {
    for (const t of body.tools as unknown[]) {
      if (isObject(t) && typeof t.type === 'string' && SERVER_TOOL.test(t.type))
        why.add(`server tool ${t.type}`);
    }
  }
  // Anthropic's MCP connector: the provider calls the servers and reads their results as input.
  if (Array.isArray(body.mcp_servers) && body.mcp_servers.length > 0) why.add('mcp_servers');
  referencesIn(body.messages ?? body.input, 0, why);
  return [...why];
}

/** A URL the provider fetches itself (its content is input the body does not hold); not a `data:` URL. */
function remoteUrl(v: unknown): boolean {
  return typeof v === 'string' && v !== '' && !v.startsWith('data:');
}

/** How many answers a request asks for (Chat Completions' `n`, Gemini's `candidateCount`), when more than one. */
export function answerCount(count: unknown): number | undefined {
  return typeof count === 'number' && Number.isInteger(count) && count > 1 ? count : undefined;
}

/**
 * The output facts of a request that asks for `count` answers: each answer may use the whole cap,
 * and one without a cap the whole default one (`answers`, for the budget's reservation).
 */
export function outputFacts(
  cap: number | null,
  count: unknown,
): Pick<RequestFacts, 'maxOutputTokens' | 'answers'> {
  const answers = answerCount(count);
  if (answers === undefined) return { maxOutputTokens: cap };
  return cap === null ? { maxOutputTokens: null, answers } : { maxOutputTokens: cap * answers };
}

/**
 * The references in a request's messages. Recursion bounded at depth 8, arrays walked in place: a
 * stack entry per element was as large again as a body of a million empty items. Children are
 * visited last first, the order the reasons were always found in.
 */
function referencesIn(v: unknown, depth: number, why: Set<string>): void {
  if (depth > 8) return;
  if (Array.isArray(v)) {
    for (let i = v.length - 1; i >= 0; i--) referencesIn(v[i], depth + 1, why);
  } else if (isObject(v)) {
    if (typeof v.file_id === 'string' || (v.type === 'file' && v.file_id !== undefined))
      why.add('file reference');
    if (isObject(v.source) && (v.source.type === 'file' || typeof v.source.file_id === 'string'))
      why.add('file reference');
    // Anthropic's `source: {type: "url"}`, OpenAI's `image_url` (Chat's object or Responses'
    // string) and `file_url`: fetched by the provider, as large as they like.
    if (isObject(v.source) && v.source.type === 'url') why.add('url reference');
    if (
      remoteUrl(v.file_url) ||
      remoteUrl(v.image_url) ||
      (isObject(v.image_url) && remoteUrl(v.image_url.url))
    )
      why.add('url reference');
    // Every form the ownership check takes for a reference (`{"id": …}` alone, a reasoning item
    // without its content), not only `item_reference`: each makes the provider read a stored item.
    if (referenceOf(v) !== undefined) why.add('item reference');
    // A PDF inline: the provider renders each page (an image's tokens and its text apiece), and a
    // page can reuse another's content, so a document of a few kilobytes may hold hundreds of them.
    if (isObject(v.source) && v.source.type === 'base64' && v.source.media_type === 'application/pdf')
      why.add('pdf document');
    if (typeof v.file_data === 'string' && v.file_data !== '') why.add('pdf document');
    if (isObject(v.file)) referencesIn(v.file, depth + 1, why);
    if (Array.isArray(v.content)) referencesIn(v.content, depth + 1, why);
  }
}

/**
 * OpenAI's `service_tier: "priority"` (and the older `scale`) is billed above the standard prices,
 * which are the only ones the price data has: served, it would be recorded and charged to budgets
 * at about half its cost. Refused; `auto`, `default` and `flex` (cheaper, so never under-counted) pass.
 */
export function unpricedServiceTier(body: JsonObject): string | null {
  const tier = body.service_tier;
  return tier === 'priority' || tier === 'scale'
    ? `The bridge does not accept \`service_tier: "${tier}"\`: it is billed above the prices the bridge knows, so its cost would be under-counted. Leave it out, or send \`auto\`, \`default\` or \`flex\`.`
    : null;
}
