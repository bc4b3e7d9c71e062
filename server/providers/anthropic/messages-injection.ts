import { isObject, num, parseArguments, str } from '../common';
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

type Block = JsonObject;

function replace(data: JsonObject): EventVerdict {
  return { action: 'replace', data: JSON.stringify(data) };
}

/** Offered tools the turn calls, and whether it also calls one of the client's (server tools are neither). */
function callsIn(
  content: readonly unknown[],
  isInjected: (name: string) => boolean,
): { calls: InjectedCall[]; client: boolean } {
  const calls: InjectedCall[] = [];
  let client = false;
  for (const b of content) {
    if (!isObject(b) || b.type !== 'tool_use') continue;
    const name = str(b.name) ?? '';
    if (isInjected(name)) calls.push({ id: str(b.id) ?? '', name, input: b.input ?? {} });
    else client = true;
  }
  return { calls, client };
}

function isHidden(b: unknown, isInjected: (name: string) => boolean): boolean {
  return isObject(b) && b.type === 'tool_use' && isInjected(str(b.name) ?? '');
}

/** Whether the round goes on: offered tools called, nothing of the client's, the model waiting for them. */
function continues(calls: InjectedCall[], client: boolean, stop: unknown, last: boolean): boolean {
  return calls.length > 0 && !client && stop === 'tool_use' && !last;
}

/** A block being streamed, rebuilt from its deltas as the SDKs do, so the next round can carry it back. */
interface OpenBlock {
  block: Block;
  json: string;
  hidden: boolean;
  /** Its index in the client's message; -1 when hidden. */
  index: number;
}

function applyDelta(b: OpenBlock, delta: unknown): void {
  if (!isObject(delta)) return;
  switch (delta.type) {
    case 'text_delta':
      b.block.text = (str(b.block.text) ?? '') + (str(delta.text) ?? '');
      break;
    case 'thinking_delta':
      b.block.thinking = (str(b.block.thinking) ?? '') + (str(delta.thinking) ?? '');
      break;
    case 'signature_delta':
      b.block.signature = str(delta.signature) ?? '';
      break;
    case 'input_json_delta':
      b.json += str(delta.partial_json) ?? '';
      break;
    case 'citations_delta':
      b.block.citations = [...(Array.isArray(b.block.citations) ? b.block.citations : []), delta.citation];
      break;
  }
}

function closeBlock(b: OpenBlock): void {
  if (b.json === '') return;
  const input = parseArguments(b.json);
  // A call whose arguments do not parse still goes back as an object; running it reports the error.
  b.block.input = isObject(input) ? input : {};
  b.block.rawInput = isObject(input) ? undefined : input;
}

/** The turn as the next request carries it: every block, in order, without the bridge's bookkeeping. */
function turnOf(blocks: Map<number, OpenBlock>): Block[] {
  return [...blocks.entries()]
    .sort(([a], [b]) => a - b)
    .map(([, b]) => {
      const { rawInput: _raw, ...block } = b.block;
      return block;
    });
}

/** Usage counts in `message_delta` are cumulative for the message: present fields replace earlier ones. */
function mergeUsage(into: unknown, delta: unknown): unknown {
  if (!isObject(delta)) return into;
  const out: JsonObject = isObject(into) ? { ...into } : {};
  for (const [k, v] of Object.entries(delta)) if (v !== null && v !== undefined) out[k] = v;
  return out;
}

/**
 * All rounds as one message: the first round's `message_start`, every visible content block
 * renumbered in order, injected `tool_use` blocks hidden, the intermediate rounds' `message_delta`
 * and `message_stop` dropped, and the last `message_delta` carrying the usage of all rounds.
 */
class MessagesInjectedStream implements InjectedStream {
  private round = 0;
  private last = false;
  /** Blocks the client has been shown so far, over all rounds. */
  private shown = 0;
  private prior: unknown = null;
  private usage: unknown = null;
  private readonly blocks = new Map<number, OpenBlock>();
  private decided: RoundEnd | null = null;

  constructor(private readonly isInjected: (name: string) => boolean) {}

  beginRound(last: boolean): void {
    this.round++;
    this.last = last;
    this.usage = null;
    this.blocks.clear();
    this.decided = null;
  }

  private renumber(data: JsonObject, b: OpenBlock): EventVerdict {
    if (b.hidden) return DROP;
    return b.index === num(data.index) ? FORWARD : replace({ ...data, index: b.index });
  }

  onEvent(ev: SseEvent): EventVerdict {
    if (ev.event === 'ping') return FORWARD;
    const data = eventJson(ev);
    if (!data) return FORWARD;
    switch (data.type) {
      case 'message_start':
        this.usage = isObject(data.message) ? (data.message.usage ?? null) : null;
        return this.round === 1 ? FORWARD : DROP;
      case 'content_block_start': {
        const block: Block = isObject(data.content_block) ? { ...data.content_block } : {};
        const hidden = isHidden(block, this.isInjected);
        const b: OpenBlock = { block, json: '', hidden, index: hidden ? -1 : this.shown++ };
        this.blocks.set(num(data.index), b);
        return this.renumber(data, b);
      }
      case 'content_block_delta': {
        const b = this.blocks.get(num(data.index));
        if (!b) return FORWARD;
        applyDelta(b, data.delta);
        return this.renumber(data, b);
      }
      case 'content_block_stop': {
        const b = this.blocks.get(num(data.index));
        if (!b) return FORWARD;
        closeBlock(b);
        return this.renumber(data, b);
      }
      case 'message_delta': {
        this.usage = mergeUsage(this.usage, data.usage);
        const turn = turnOf(this.blocks);
        const { calls, client } = callsIn(turn, this.isInjected);
        for (const c of calls) {
          const raw = [...this.blocks.values()].find((b) => b.block.id === c.id)?.block.rawInput;
          if (raw !== undefined) c.input = raw;
        }
        const delta = isObject(data.delta) ? { ...data.delta } : {};
        if (continues(calls, client, delta.stop_reason, this.last)) {
          this.decided = { continues: true, calls, turn };
          this.prior = addUsage(this.prior, this.usage);
          return DROP;
        }
        this.decided = { continues: false, calls, turn };
        // Hidden calls leave nothing for the client to run: the message simply ends.
        if (delta.stop_reason === 'tool_use' && !client) delta.stop_reason = 'end_turn';
        return replace({ ...data, delta, usage: addUsage(this.prior, this.usage) });
      }
      case 'message_stop':
        return this.decided?.continues ? DROP : FORWARD;
      default:
        return FORWARD;
    }
  }

  endRound(): RoundEnd {
    return this.decided ?? { continues: false, calls: [], turn: turnOf(this.blocks) };
  }
}

class MessagesInjectedJson implements InjectedJson {
  private first: JsonObject | null = null;
  private final: unknown = null;
  private readonly content: unknown[] = [];
  private usage: unknown = null;
  private client = false;

  constructor(private readonly isInjected: (name: string) => boolean) {}

  addRound(json: unknown, last: boolean): RoundEnd {
    this.final = json;
    if (!isObject(json)) return { continues: false, calls: [], turn: [] };
    this.first ??= json;
    const turn = Array.isArray(json.content) ? (json.content as unknown[]) : [];
    const { calls, client } = callsIn(turn, this.isInjected);
    this.client = client;
    this.content.push(...turn.filter((b) => !isHidden(b, this.isInjected)));
    this.usage = addUsage(this.usage, json.usage);
    return { continues: continues(calls, client, json.stop_reason, last), calls, turn };
  }

  result(): unknown {
    const f = this.final;
    if (!isObject(f) || !this.first) return f;
    const stop = f.stop_reason === 'tool_use' && !this.client ? 'end_turn' : f.stop_reason;
    return { ...f, id: this.first.id, content: this.content, stop_reason: stop, usage: this.usage };
  }
}

/** Tool injection for the Messages API: `tools`, `tool_use` blocks, `tool_result` blocks. */
export const messagesInjection: ToolInjection = {
  accepts(body: JsonObject): boolean {
    const choice = isObject(body.tool_choice) ? body.tool_choice.type : undefined;
    return Array.isArray(body.messages) && choice !== 'none';
  },

  clientToolNames(body: JsonObject): Set<string> {
    return toolNames(body.tools);
  },

  offer(body: JsonObject, tools: readonly OfferedTool[]): JsonObject {
    const own = Array.isArray(body.tools) ? body.tools : [];
    const added = tools.map((t) => ({
      name: t.name,
      description: t.description,
      input_schema: objectSchema(t.inputSchema),
    }));
    return { ...body, tools: [...own, ...added] };
  },

  followUp(body: JsonObject, turn: unknown, outcomes: readonly CallOutcome[], last: boolean): JsonObject {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    const results = outcomes.map((o) => ({
      type: 'tool_result',
      tool_use_id: o.id,
      content: o.text === '' ? '(no output)' : o.text,
      ...(o.isError ? { is_error: true } : {}),
    }));
    const next: JsonObject = {
      ...body,
      messages: [...messages, { role: 'assistant', content: turn }, { role: 'user', content: results }],
    };
    const choice = isObject(body.tool_choice) ? body.tool_choice : undefined;
    if (last) next.tool_choice = { type: 'none' };
    // A choice that forces a tool call would force one every round: later rounds choose freely.
    else if (choice && (choice.type === 'any' || choice.type === 'tool')) {
      const { name: _name, ...rest } = choice;
      next.tool_choice = { ...rest, type: 'auto' };
    }
    return next;
  },

  createStream(_body: JsonObject, isInjected: (name: string) => boolean): InjectedStream {
    return new MessagesInjectedStream(isInjected);
  },

  createJson(isInjected: (name: string) => boolean): InjectedJson {
    return new MessagesInjectedJson(isInjected);
  },
};
