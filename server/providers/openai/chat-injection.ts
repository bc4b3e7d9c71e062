import { argumentsOf, isObject, num, parseArguments, str } from '../common';
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
import { CallKeys } from './call-keys';

/** Between the text of two rounds, so the client's one message reads as paragraphs. */
const ROUND_SEPARATOR = '\n\n';

/** The assistant message as the next request carries it. */
interface ChatTurn {
  role: 'assistant';
  content: string | null;
  tool_calls?: unknown[];
}

function functionName(tc: unknown): string {
  return isObject(tc) && isObject(tc.function) ? (str(tc.function.name) ?? '') : '';
}

/**
 * The round called offered tools only and may go on. A turn with calls may finish as `stop`: OpenAI
 * says so when `tool_choice` names the function, Gemini's OpenAI endpoint always does.
 */
function continues(calls: InjectedCall[], client: boolean, finish: unknown, last: boolean): boolean {
  return calls.length > 0 && !client && (finish === 'tool_calls' || finish === 'stop') && !last;
}

interface StreamedCall {
  id: string;
  name: string;
  args: string;
  hidden: boolean;
  /** Its index among the calls the client sees; -1 when hidden. */
  index: number;
}

/**
 * All rounds as one completion: one id, the rounds' text in order, injected `tool_calls` deltas
 * hidden and the client's renumbered, intermediate `finish_reason`s, usage chunks and `[DONE]`
 * dropped, and the last usage chunk (when the client asked for one) carrying every round's usage.
 */
class ChatInjectedStream implements InjectedStream {
  private round = 0;
  private last = false;
  private id: string | null = null;
  private textShown = false;
  private prior: unknown = null;
  // The round being streamed:
  private usage: unknown = null;
  private text = '';
  /** By call key (call-keys.ts), in the order the calls started. */
  private readonly calls = new Map<string, StreamedCall>();
  private keys = new CallKeys();
  private shownCalls = 0;
  private decided: RoundEnd | null = null;

  constructor(
    private readonly isInjected: (name: string) => boolean,
    /** The client asked for `stream_options.include_usage`: it gets the usage chunk, summed. */
    private readonly wantsUsage: boolean,
  ) {}

  beginRound(last: boolean): void {
    this.round++;
    this.last = last;
    this.usage = null;
    this.text = '';
    this.calls.clear();
    this.keys = new CallKeys();
    this.shownCalls = 0;
    this.decided = null;
  }

  private injectedCalls(): { calls: InjectedCall[]; client: boolean } {
    const calls: InjectedCall[] = [];
    let client = false;
    for (const c of this.calls.values()) {
      if (c.hidden) calls.push({ id: c.id, name: c.name, input: parseArguments(c.args) });
      else client = true;
    }
    return { calls, client };
  }

  private turn(): ChatTurn {
    const calls = [...this.calls.values()];
    return {
      role: 'assistant',
      content: this.text === '' ? null : this.text,
      ...(calls.length > 0
        ? {
            tool_calls: calls.map((c) => ({
              id: c.id,
              type: 'function',
              function: { name: c.name, arguments: c.args },
            })),
          }
        : {}),
    };
  }

  /** Tool-call deltas: injected ones hidden, the client's renumbered from 0. Returns what is left. */
  private filterCalls(choice: number, deltas: unknown[]): unknown[] {
    const visible: unknown[] = [];
    for (const d of deltas) {
      if (!isObject(d)) continue;
      // Calls without an index (Gemini's OpenAI endpoint) are told apart by id, not all call 0.
      const key = this.keys.key(choice, d);
      let c = this.calls.get(key);
      if (!c) {
        const hidden = this.isInjected(functionName(d));
        c = { id: '', name: '', args: '', hidden, index: hidden ? -1 : this.shownCalls++ };
        this.calls.set(key, c);
      }
      if (typeof d.id === 'string') c.id = d.id;
      if (isObject(d.function)) {
        // Replaced, never appended, as the SDKs assemble it (some servers repeat it per delta).
        const name = str(d.function.name);
        if (name) c.name = name;
        c.args += str(d.function.arguments) ?? '';
      }
      if (!c.hidden) visible.push(d.index === c.index ? d : { ...d, index: c.index });
    }
    return visible;
  }

  private choice(choice: unknown): { choice: unknown; changed: boolean; empty: boolean } {
    if (!isObject(choice)) return { choice, changed: false, empty: false };
    const out: JsonObject = { ...choice };
    let changed = false;
    const delta: JsonObject = isObject(choice.delta) ? { ...choice.delta } : {};
    const text = delta.content;
    if (typeof text === 'string' && text !== '') {
      if (this.text === '' && this.textShown) {
        delta.content = ROUND_SEPARATOR + text;
        changed = true;
      }
      this.text += text;
      this.textShown = true;
    }
    if (Array.isArray(delta.tool_calls)) {
      const visible = this.filterCalls(num(choice.index), delta.tool_calls);
      if (visible.length === 0) delete delta.tool_calls;
      else delta.tool_calls = visible;
      changed = true;
    }
    if (typeof choice.finish_reason === 'string') {
      const { calls, client } = this.injectedCalls();
      const goesOn = continues(calls, client, choice.finish_reason, this.last);
      this.decided = { continues: goesOn, calls, turn: this.turn() };
      if (goesOn) out.finish_reason = null;
      else if (choice.finish_reason === 'tool_calls' && !client) out.finish_reason = 'stop';
      changed ||= out.finish_reason !== choice.finish_reason;
    }
    out.delta = delta;
    const empty =
      Object.values(delta).every((v) => v === null || v === undefined || v === '') &&
      out.finish_reason == null;
    return { choice: out, changed, empty };
  }

  onEvent(ev: SseEvent): EventVerdict {
    if (ev.data === '[DONE]') return this.decided?.continues ? DROP : FORWARD;
    const data = eventJson(ev);
    if (!data || isObject(data.error)) return FORWARD;
    if (this.round === 1) this.id ??= str(data.id);
    const out: JsonObject = { ...data };
    let changed = false;
    if (this.round > 1 && this.id !== null && out.id !== this.id) {
      out.id = this.id;
      changed = true;
    }
    if ('usage' in out) {
      if (isObject(out.usage)) this.usage = out.usage;
      if (Array.isArray(out.choices) && out.choices.length === 0) {
        if (this.decided?.continues || !this.wantsUsage) return DROP;
        return {
          action: 'replace',
          data: JSON.stringify({ ...out, usage: addUsage(this.prior, this.usage) }),
        };
      }
      if (!this.wantsUsage) {
        delete out.usage;
        changed = true;
      }
    }
    if (Array.isArray(out.choices)) {
      let allEmpty = true;
      let stripped = false;
      out.choices = (out.choices as unknown[]).map((c) => {
        const r = this.choice(c);
        stripped ||= r.changed;
        allEmpty &&= r.empty;
        return r.choice;
      });
      changed ||= stripped;
      // A chunk that carried only injected calls or an intermediate finish has nothing left to say.
      if (stripped && allEmpty && (out.choices as unknown[]).length > 0 && !isObject(out.usage)) return DROP;
    }
    return changed ? { action: 'replace', data: JSON.stringify(out) } : FORWARD;
  }

  endRound(): RoundEnd {
    const end = this.decided ?? { continues: false, ...this.injectedCalls(), turn: this.turn() };
    if (end.continues) this.prior = addUsage(this.prior, this.usage);
    return end;
  }
}

class ChatInjectedJson implements InjectedJson {
  private first: JsonObject | null = null;
  private final: unknown = null;
  private readonly texts: string[] = [];
  private usage: unknown = null;
  private client = false;

  constructor(private readonly isInjected: (name: string) => boolean) {}

  addRound(json: unknown, last: boolean): RoundEnd {
    this.final = json;
    const choice = isObject(json) && Array.isArray(json.choices) ? json.choices[0] : undefined;
    if (!isObject(json) || !isObject(choice) || !isObject(choice.message))
      return { continues: false, calls: [], turn: null };
    this.first ??= json;
    const message = choice.message;
    const toolCalls = Array.isArray(message.tool_calls) ? (message.tool_calls as unknown[]) : [];
    const calls: InjectedCall[] = [];
    this.client = false;
    for (const tc of toolCalls) {
      const name = functionName(tc);
      if (this.isInjected(name) && isObject(tc) && isObject(tc.function))
        calls.push({ id: str(tc.id) ?? '', name, input: argumentsOf(tc.function.arguments) });
      else this.client = true;
    }
    if (typeof message.content === 'string' && message.content !== '') this.texts.push(message.content);
    this.usage = addUsage(this.usage, json.usage);
    const turn: ChatTurn = {
      role: 'assistant',
      content: str(message.content),
      ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
    };
    return { continues: continues(calls, this.client, choice.finish_reason, last), calls, turn };
  }

  result(): unknown {
    const f = this.final;
    if (!isObject(f) || !this.first || !Array.isArray(f.choices)) return f;
    const choices = (f.choices as unknown[]).map((c, i) => {
      if (i !== 0 || !isObject(c) || !isObject(c.message)) return c;
      const { tool_calls: calls, ...message } = c.message;
      const visible = Array.isArray(calls) ? calls.filter((tc) => !this.isInjected(functionName(tc))) : [];
      return {
        ...c,
        message: {
          ...message,
          content: this.texts.length > 0 ? this.texts.join(ROUND_SEPARATOR) : message.content,
          ...(visible.length > 0 ? { tool_calls: visible } : {}),
        },
        finish_reason: c.finish_reason === 'tool_calls' && !this.client ? 'stop' : c.finish_reason,
      };
    });
    return { ...f, id: this.first.id, choices, usage: this.usage };
  }
}

/** Tool injection for Chat Completions: `function` tools, `tool_calls`, `tool` messages. */
export const chatInjection: ToolInjection = {
  accepts(body: JsonObject): boolean {
    const n = body.n;
    return (
      Array.isArray(body.messages) &&
      body.tool_choice !== 'none' &&
      body.functions === undefined &&
      (n === undefined || n === null || n === 1)
    );
  },

  clientToolNames(body: JsonObject): Set<string> {
    return toolNames(body.tools);
  },

  offer(body: JsonObject, tools: readonly OfferedTool[]): JsonObject {
    const own = Array.isArray(body.tools) ? body.tools : [];
    const added = tools.map((t) => ({
      type: 'function',
      function: { name: t.name, description: t.description, parameters: objectSchema(t.inputSchema) },
    }));
    return { ...body, tools: [...own, ...added] };
  },

  followUp(body: JsonObject, turn: unknown, outcomes: readonly CallOutcome[], last: boolean): JsonObject {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    const results = outcomes.map((o) => ({
      role: 'tool',
      tool_call_id: o.id,
      content: o.isError ? `Error: ${o.text}` : o.text,
    }));
    const next: JsonObject = { ...body, messages: [...messages, turn, ...results] };
    if (last) next.tool_choice = 'none';
    // A choice that forces a tool call would force one every round: later rounds choose freely.
    else if (body.tool_choice === 'required' || isObject(body.tool_choice)) next.tool_choice = 'auto';
    return next;
  },

  createStream(body: JsonObject, isInjected: (name: string) => boolean): InjectedStream {
    const opts = isObject(body.stream_options) ? body.stream_options : undefined;
    return new ChatInjectedStream(isInjected, opts?.include_usage === true);
  },

  createJson(isInjected: (name: string) => boolean): InjectedJson {
    return new ChatInjectedJson(isInjected);
  },
};
