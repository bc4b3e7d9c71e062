import { argumentsOf, isObject, num, str } from '../common';
import {
  addUsage,
  type CallOutcome,
  eventJson,
  type InjectedCall,
  type InjectedJson,
  type InjectedStream,
  type OfferedTool,
  objectSchema,
  type RoundEnd,
  type ToolInjection,
  toolNames,
} from '../injection';
import { DROP, type EventVerdict, FORWARD, type JsonObject, type SseEvent } from '../types';

/** Output items that ask nothing of the client: the API ran them, or they are the model's own. */
const PASSIVE = new Set([
  'message',
  'reasoning',
  'web_search_call',
  'file_search_call',
  'code_interpreter_call',
  'image_generation_call',
  'mcp_call',
  'mcp_list_tools',
]);

const TERMINAL = new Set(['response.completed', 'response.incomplete', 'response.failed']);
const OPENING = new Set(['response.created', 'response.in_progress', 'response.queued']);

function isInjectedItem(item: unknown, isInjected: (name: string) => boolean): boolean {
  // A call inside a client's `namespace` tool is the client's, whatever its name: the bridge's
  // tools are offered at the top level. Taken for one, a client tool named like it ran on the
  // bridge's server, recorded as a denied client call.
  return (
    isObject(item) &&
    item.type === 'function_call' &&
    item.namespace === undefined &&
    isInjected(str(item.name) ?? '')
  );
}

/** Offered tools the output calls, and whether it holds anything else the client must act on. */
function callsIn(
  output: readonly unknown[],
  isInjected: (name: string) => boolean,
): { calls: InjectedCall[]; client: boolean } {
  const calls: InjectedCall[] = [];
  let client = false;
  for (const item of output) {
    if (!isObject(item)) continue;
    if (isInjectedItem(item, isInjected)) {
      calls.push({
        id: str(item.call_id) ?? '',
        name: str(item.name) ?? '',
        input: argumentsOf(item.arguments),
      });
    } else if (!PASSIVE.has(String(item.type))) client = true;
  }
  return { calls, client };
}

function continues(calls: InjectedCall[], client: boolean, status: unknown, last: boolean): boolean {
  return calls.length > 0 && !client && status === 'completed' && !last;
}

/** The response object as the client sees it: the bridge's tools left out of the echoed `tools`. */
function withoutOffered(response: JsonObject, isInjected: (name: string) => boolean): JsonObject {
  if (!Array.isArray(response.tools)) return response;
  const tools = (response.tools as unknown[]).filter(
    (t) => !(isObject(t) && t.type === 'function' && isInjected(str(t.name) ?? '')),
  );
  return { ...response, tools };
}

function outputOf(response: unknown): unknown[] {
  return isObject(response) && Array.isArray(response.output) ? (response.output as unknown[]) : [];
}

/** The final response object: every round's visible output, all rounds' usage, the client's own settings echoed. */
function finalResponse(
  last: JsonObject,
  first: JsonObject | null,
  output: unknown[],
  usage: unknown,
  isInjected: (name: string) => boolean,
): JsonObject {
  const echo = first && 'tool_choice' in first ? { tool_choice: first.tool_choice } : {};
  return withoutOffered({ ...last, ...echo, output, usage }, isInjected);
}

/**
 * All rounds as one response: the first round's `response.created`, every visible output item
 * renumbered in order, injected `function_call` items hidden, sequence numbers renumbered, the
 * intermediate rounds' closing events dropped, and the last one holding every round's visible
 * output and usage. It carries the last round's id, whose stored context holds the whole exchange.
 */
class ResponsesInjectedStream implements InjectedStream {
  private round = 0;
  private last = false;
  private seq = 0;
  private shown = 0;
  private prior: unknown = null;
  private first: JsonObject | null = null;
  /** Visible output items of the rounds before this one. */
  private readonly earlier: unknown[] = [];
  // The round being streamed:
  private readonly items = new Map<number, { hidden: boolean; index: number }>();
  private readonly done = new Map<number, unknown>();
  private decided: RoundEnd | null = null;

  constructor(private readonly isInjected: (name: string) => boolean) {}

  beginRound(last: boolean): void {
    this.round++;
    this.last = last;
    this.items.clear();
    this.done.clear();
    this.decided = null;
  }

  private send(data: JsonObject): EventVerdict {
    const out = 'sequence_number' in data ? { ...data, sequence_number: this.seq++ } : data;
    return { action: 'replace', data: JSON.stringify(out) };
  }

  onEvent(ev: SseEvent): EventVerdict {
    const data = eventJson(ev);
    if (!data) return FORWARD;
    const type = String(data.type);
    const response = isObject(data.response) ? data.response : undefined;
    if (OPENING.has(type)) {
      if (this.round > 1) return DROP;
      if (response) this.first ??= response;
      return this.send(response ? { ...data, response: withoutOffered(response, this.isInjected) } : data);
    }
    if (TERMINAL.has(type) && response) {
      const output = outputOf(response).length > 0 ? outputOf(response) : this.doneItems();
      const { calls, client } = callsIn(output, this.isInjected);
      const goesOn = type === 'response.completed' && continues(calls, client, response.status, this.last);
      this.decided = { continues: goesOn, calls, turn: output };
      const visible = output.filter((item) => !isInjectedItem(item, this.isInjected));
      if (goesOn) {
        this.earlier.push(...visible);
        this.prior = addUsage(this.prior, response.usage);
        return DROP;
      }
      const usage = addUsage(this.prior, response.usage);
      const final = finalResponse(
        response,
        this.first,
        [...this.earlier, ...visible],
        usage,
        this.isInjected,
      );
      return this.send({ ...data, response: final });
    }
    if ('output_index' in data) {
      const at = num(data.output_index);
      let item = this.items.get(at);
      if (!item) {
        const hidden = isInjectedItem(data.item, this.isInjected);
        item = { hidden, index: hidden ? -1 : this.shown++ };
        this.items.set(at, item);
      }
      if (type === 'response.output_item.done') this.done.set(at, data.item);
      if (item.hidden) return DROP;
      return this.send({ ...data, output_index: item.index });
    }
    return this.send(data);
  }

  private doneItems(): unknown[] {
    return [...this.done.entries()].sort(([a], [b]) => a - b).map(([, item]) => item);
  }

  endRound(): RoundEnd {
    return this.decided ?? { continues: false, ...callsIn(this.doneItems(), this.isInjected), turn: [] };
  }
}

class ResponsesInjectedJson implements InjectedJson {
  private first: JsonObject | null = null;
  private final: unknown = null;
  private readonly output: unknown[] = [];
  private usage: unknown = null;

  constructor(private readonly isInjected: (name: string) => boolean) {}

  addRound(json: unknown, last: boolean): RoundEnd {
    this.final = json;
    if (!isObject(json)) return { continues: false, calls: [], turn: [] };
    this.first ??= json;
    const output = outputOf(json);
    const { calls, client } = callsIn(output, this.isInjected);
    this.output.push(...output.filter((item) => !isInjectedItem(item, this.isInjected)));
    this.usage = addUsage(this.usage, json.usage);
    return { continues: continues(calls, client, json.status, last), calls, turn: output };
  }

  result(): unknown {
    const f = this.final;
    if (!isObject(f)) return f;
    return finalResponse(f, this.first, this.output, this.usage, this.isInjected);
  }
}

/**
 * Output items as the next request's input. Without stored responses (`store: false`) item ids
 * refer to nothing, so they go, and reasoning goes too unless it carries its encrypted content.
 */
function asInput(items: unknown, stored: boolean): unknown[] {
  const list = Array.isArray(items) ? (items as unknown[]) : [];
  if (stored) return list;
  return list
    .filter((item) => !(isObject(item) && item.type === 'reasoning' && !item.encrypted_content))
    .map((item) => {
      if (!isObject(item)) return item;
      const { id: _id, ...rest } = item;
      return rest;
    });
}

/** Tool injection for Responses: `function` tools, `function_call` items, `function_call_output` items. */
export const responsesInjection: ToolInjection = {
  accepts(body: JsonObject): boolean {
    return (
      (typeof body.input === 'string' || Array.isArray(body.input)) &&
      body.tool_choice !== 'none' &&
      body.background !== true
    );
  },

  clientToolNames(body: JsonObject): Set<string> {
    return toolNames(body.tools);
  },

  offer(body: JsonObject, tools: readonly OfferedTool[]): JsonObject {
    const own = Array.isArray(body.tools) ? body.tools : [];
    const added = tools.map((t) => ({
      type: 'function',
      name: t.name,
      description: t.description,
      parameters: objectSchema(t.inputSchema),
      // Strict mode would refuse most MCP schemas.
      strict: false,
    }));
    return { ...body, tools: [...own, ...added] };
  },

  followUp(body: JsonObject, turn: unknown, outcomes: readonly CallOutcome[], last: boolean): JsonObject {
    const input =
      typeof body.input === 'string'
        ? [{ role: 'user', content: body.input }]
        : Array.isArray(body.input)
          ? body.input
          : [];
    const results = outcomes.map((o) => ({
      type: 'function_call_output',
      call_id: o.id,
      output: o.isError ? `Error: ${o.text}` : o.text,
    }));
    const next: JsonObject = {
      ...body,
      input: [...input, ...asInput(turn, body.store !== false), ...results],
    };
    if (last) next.tool_choice = 'none';
    // A choice that forces a tool call would force one every round: later rounds choose freely.
    else if (body.tool_choice === 'required' || isObject(body.tool_choice)) next.tool_choice = 'auto';
    return next;
  },

  createStream(_body: JsonObject, isInjected: (name: string) => boolean): InjectedStream {
    return new ResponsesInjectedStream(isInjected);
  },

  createJson(isInjected: (name: string) => boolean): InjectedJson {
    return new ResponsesInjectedJson(isInjected);
  },
};
