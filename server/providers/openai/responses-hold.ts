import { isObject, num, str } from '../common';
import { eventJson } from '../injection';
import {
  type Denial,
  type FrameRewriter,
  frame,
  framedHold,
  type HeldCall,
  type SseFrame,
  type ToolHold,
  type ToolJudge,
} from '../tool-hold';
import type { JsonObject } from '../wire';
import { CLIENT_CALL_ITEMS, clientCall } from './responses-calls';

const ENDS = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/** A held item's call; an item whose `done` form names no client call is still judged, by its id. */
function callOf(item: JsonObject): HeldCall {
  return clientCall(item) ?? { id: str(item.call_id) ?? str(item.id) ?? '', name: 'unknown', input: {} };
}

/** The message item a denied call becomes, at the same place in `output`. */
function messageItem(callItemId: string, d: Denial): JsonObject {
  return {
    type: 'message',
    id: `msg_aibridge_${callItemId}`,
    status: 'completed',
    role: 'assistant',
    content: [{ type: 'output_text', text: d.message, annotations: [] }],
  };
}

interface Held {
  outputIndex: number;
  itemId: string;
  frames: string[];
  seqs: number[];
}

/**
 * Holds each client tool-call output item from `response.output_item.added` to its
 * `response.output_item.done`. A denied call becomes a message item at the same output index, sent
 * as the events a message streams with, and the closing `response.*` event's `output` carries the
 * message in the call's place. A call is judged wherever it first shows whole: an upstream that
 * sends a `done` with no `added` before it, or a call only in the closing event's `output` (some
 * OpenAI-compatible servers send only the final response), gets the same judgment, so the record's
 * `deny` is always what the client saw.
 */
class ResponsesHold implements FrameRewriter {
  private held: Held | undefined;
  /** Denied call items by item id, and what replaced them. */
  private readonly replaced = new Map<string, JsonObject>();
  /**
   * Calls judged already, by item id, with the call as judged: the same call seen again (its
   * `done`, the closing output) is not judged twice, but a call with no id, or an id reused for
   * another call, always is.
   */
  private readonly judged = new Map<string, string>();

  constructor(private readonly judge: ToolJudge) {}

  onFrame(f: SseFrame): string {
    const data = f.ev ? eventJson(f.ev) : undefined;
    const h = this.held;
    if (h && data && ENDS.has(String(data.type))) {
      // The response ended with a call still held (its `done` never came): judged as the closing
      // output has it, or, absent there, dropped as a cut-off call is; then the end as any other.
      const item = isObject(data.response) ? finalItem(data.response, h) : undefined;
      const released = item ? this.release(item) : this.drop();
      return released + this.onFrame(f);
    }
    if (h) {
      h.frames.push(f.raw);
      if (data && typeof data.sequence_number === 'number') h.seqs.push(data.sequence_number);
      if (
        data?.type === 'response.output_item.done' &&
        num(data.output_index) === h.outputIndex &&
        isObject(data.item)
      )
        return this.release(data.item);
      return '';
    }
    if (!data) return f.raw;
    const isCall = isObject(data.item) && CLIENT_CALL_ITEMS.has(String(data.item.type));
    if (data.type === 'response.output_item.added' && isCall) {
      this.held = this.hold(data, f.raw);
      return '';
    }
    if (data.type === 'response.output_item.done' && isCall) {
      const item = data.item as JsonObject;
      // The same call as judged passes, or, denied, is dropped (its replacement went out already).
      // Any other (no `added` before it): judged on the spot.
      if (this.seen(item)) return this.replaced.has(str(item.id) ?? '') ? '' : f.raw;
      this.held = this.hold(data, f.raw);
      return this.release(item);
    }
    if (ENDS.has(String(data.type)) && isObject(data.response) && Array.isArray(data.response.output)) {
      let changed = false;
      const output = (data.response.output as unknown[]).map((it) => {
        if (!isObject(it) || !CLIENT_CALL_ITEMS.has(String(it.type))) return it;
        const id = str(it.id) ?? '';
        if (this.seen(it)) {
          const was = this.replaced.get(id);
          if (was) changed = true;
          return was ?? it;
        }
        // A call the stream never showed (or showed otherwise): judged where the client first sees it.
        const d = this.judgeOnce(it);
        if (!d) return it;
        changed = true;
        return messageItem(id, d);
      });
      return changed ? frame(f.ev?.event, { ...data, response: { ...data.response, output } }) : f.raw;
    }
    return f.raw;
  }

  /** The call as the judge reads it: what must match for a call to count as seen. */
  private static signature(item: JsonObject): string {
    return JSON.stringify(callOf(item));
  }

  /** Judged already, this very call (by a non-empty id and the same content). */
  private seen(item: JsonObject): boolean {
    const id = str(item.id) ?? '';
    return id !== '' && this.judged.get(id) === ResponsesHold.signature(item);
  }

  /** Judges the call and notes it as judged; an earlier replacement under its id no longer applies. */
  private judgeOnce(item: JsonObject): Denial | undefined {
    const id = str(item.id) ?? '';
    if (id !== '') {
      this.judged.set(id, ResponsesHold.signature(item));
      this.replaced.delete(id);
    }
    return this.judge(callOf(item));
  }

  end(): string {
    // Cut off before the item was done: nothing complete to judge, and nothing of it is sent.
    return this.drop();
  }

  private hold(data: JsonObject, raw: string): Held {
    return {
      outputIndex: num(data.output_index),
      itemId: str((data.item as JsonObject).id) ?? '',
      frames: [raw],
      seqs: typeof data.sequence_number === 'number' ? [data.sequence_number] : [],
    };
  }

  private drop(): string {
    this.held = undefined;
    return '';
  }

  private release(item: JsonObject): string {
    const h = this.held!;
    this.held = undefined;
    const d = this.judgeOnce(item);
    if (!d) return h.frames.join('');
    const msg = messageItem(h.itemId, d);
    if (h.itemId !== '') this.replaced.set(h.itemId, msg);
    const output_index = h.outputIndex;
    const item_id = msg.id;
    const part = { type: 'output_text', text: d.message, annotations: [] };
    const events: [string, JsonObject][] = [
      ['response.output_item.added', { output_index, item: { ...msg, status: 'in_progress', content: [] } }],
      [
        'response.content_part.added',
        { item_id, output_index, content_index: 0, part: { ...part, text: '' } },
      ],
      [
        'response.output_text.delta',
        { item_id, output_index, content_index: 0, delta: d.message, logprobs: [] },
      ],
      [
        'response.output_text.done',
        { item_id, output_index, content_index: 0, text: d.message, logprobs: [] },
      ],
      ['response.content_part.done', { item_id, output_index, content_index: 0, part }],
      ['response.output_item.done', { output_index, item: msg }],
    ];
    // The replaced events' sequence numbers, in order; the last repeats when there are more events.
    const seq = (i: number): number | undefined => h.seqs[Math.min(i, h.seqs.length - 1)];
    return events
      .map(([type, body], i) =>
        frame(type, { type, ...body, ...(seq(i) === undefined ? {} : { sequence_number: seq(i) }) }),
      )
      .join('');
  }
}

/** The closing response's form of a held call: by its id, else at its output index. */
function finalItem(response: JsonObject, h: Held): JsonObject | undefined {
  if (!Array.isArray(response.output)) return undefined;
  const output = response.output as unknown[];
  if (h.itemId !== '') {
    for (const it of output) if (isObject(it) && str(it.id) === h.itemId) return it;
    return undefined;
  }
  const at = output[h.outputIndex];
  return isObject(at) && CLIENT_CALL_ITEMS.has(String(at.type)) ? at : undefined;
}

export const responsesHold: ToolHold = {
  createStream: (judge) => framedHold(new ResponsesHold(judge)),

  // Hosted tools the provider runs itself with nothing held before they run (a remote MCP server,
  // the code interpreter): under a deny rule, a way to have the provider do what the rule denies.
  unheld: (body) => {
    const tools = Array.isArray(body.tools) ? body.tools : [];
    const hosted = tools.find((t) => isObject(t) && (t.type === 'mcp' || t.type === 'code_interpreter'));
    return hosted
      ? `Tool-call rules apply to you, and the hosted \`${(hosted as { type: string }).type}\` tool runs at the provider before its calls can be checked: connect MCP servers through the bridge’s gateway (/mcp), or leave the tool out.`
      : null;
  },

  rewriteJson(json, judge) {
    if (!isObject(json) || !Array.isArray(json.output)) return undefined;
    let denied = false;
    const output = (json.output as unknown[]).map((it) => {
      if (!isObject(it) || !CLIENT_CALL_ITEMS.has(String(it.type))) return it;
      const d = judge(callOf(it));
      if (!d) return it;
      denied = true;
      return messageItem(str(it.id) ?? '', d);
    });
    return denied ? { ...json, output } : undefined;
  },
};
