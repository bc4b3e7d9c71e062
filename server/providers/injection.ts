import { isObject } from './common';
import type { EventVerdict, JsonObject, SseEvent } from './wire';

/**
 * The tool-injection capability of a wire API (docs/mcp.md): how tools the bridge runs itself are
 * offered to the model, how the model's calls of them are recognised in a response, how the next
 * round's request carries their results, and how the rounds' responses become the one response the
 * client receives. The loop that drives the rounds (server/mcp/loop.ts) knows none of the formats.
 */
export interface ToolInjection {
  /** Whether the request may be given tools: not when the client forbids tools or asks for several choices. */
  accepts(body: JsonObject): boolean;
  /** Names of the tools the client offers itself; an injected tool never takes one of them. */
  clientToolNames(body: JsonObject): Set<string>;
  /** The body with `tools` appended to the client's own, which stay as they were. */
  offer(body: JsonObject, tools: readonly OfferedTool[]): JsonObject;
  /**
   * The next round's body: the model's `turn` and each call's outcome appended to the conversation.
   * `last` asks the model to answer without calling tools (the round limit).
   */
  followUp(body: JsonObject, turn: unknown, outcomes: readonly CallOutcome[], last: boolean): JsonObject;
  /** Rewrites the event streams of all rounds of one request into one stream. `body` is the client's. */
  createStream(body: JsonObject, isInjected: (name: string) => boolean): InjectedStream;
  /** Collects the JSON responses of all rounds of one request and composes the one the client gets. */
  createJson(isInjected: (name: string) => boolean): InjectedJson;
}

/** A tool the bridge offers the model for the user, under the name the model sees. */
export interface OfferedTool {
  name: string;
  description: string;
  /** JSON Schema of the arguments: an object schema. */
  inputSchema: JsonObject;
}

/** A call of an offered tool, as the model made it. */
export interface InjectedCall {
  /** The provider's id for the call (`tool_use` id, `call_id`). */
  id: string;
  name: string;
  /** Arguments as JSON where they parsed, else the raw text. */
  input: unknown;
}

/** What a call produced, as it goes back to the model. */
export interface CallOutcome {
  id: string;
  text: string;
  isError: boolean;
}

/** How one upstream round ended. */
export interface RoundEnd {
  /**
   * The conversation goes on: the model called offered tools and nothing else, and the round was
   * not the last. Its closing events were kept from the client.
   */
  continues: boolean;
  /** Offered tools the model called in the round: run when `continues`, otherwise left unrun. */
  calls: InjectedCall[];
  /** The model's turn as the next request carries it (opaque to the loop). */
  turn: unknown;
}

/** One per request: fed the events of each round in turn; hides injected calls and intermediate ends. */
export interface InjectedStream {
  /** Before each round's events; a `last` round ends the response whatever the model does. */
  beginRound(last: boolean): void;
  onEvent(ev: SseEvent): EventVerdict;
  /** After the round's stream ended; a round cut short (no closing event) never continues. */
  endRound(): RoundEnd;
}

export interface InjectedJson {
  addRound(json: unknown, last: boolean): RoundEnd;
  /** The response the client receives: every round's visible output, usage summed over all rounds. */
  result(): unknown;
}

/**
 * Adds two provider usage objects field by field: numbers are summed, nested objects (token
 * details) added the same way, anything else (e.g. `service_tier`) kept from the first that has it.
 */
export function addUsage(a: unknown, b: unknown): unknown {
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  if (isObject(a) && isObject(b)) {
    const out: JsonObject = { ...a };
    for (const [k, v] of Object.entries(b)) out[k] = k in a ? addUsage(a[k], v) : v;
    return out;
  }
  return a ?? b;
}

/** Parses one event's data as a JSON object; undefined for anything else. */
export function eventJson(ev: SseEvent): JsonObject | undefined {
  try {
    const data: unknown = JSON.parse(ev.data);
    return isObject(data) ? data : undefined;
  } catch {
    // Not JSON: callers treat it like any event that is not an object (passed on untouched).
    return undefined;
  }
}

/** A JSON Schema for the arguments, as providers take it: an object schema, without `$schema`. */
export function objectSchema(schema: JsonObject): JsonObject {
  const { $schema: _drop, ...rest } = schema;
  return { ...rest, type: 'object' };
}

/** Names of tools in a `tools` array, at `name` or `function.name`. */
export function toolNames(tools: unknown): Set<string> {
  const names = new Set<string>();
  if (!Array.isArray(tools)) return names;
  for (const t of tools as unknown[]) {
    if (!isObject(t)) continue;
    if (typeof t.name === 'string') names.add(t.name);
    if (isObject(t.function) && typeof t.function.name === 'string') names.add(t.function.name);
  }
  return names;
}
