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
  /** Call items judged already (allowed or denied), by item id: each is judged once. */
  private readonly judged = new Set<string>();

  constructor(private readonly judge: ToolJudge) {}

  onFrame(f: SseFrame): string {
    const data = f.ev ? eventJson(f.ev) : undefined;
    const h = this.held;
    if (h && data && ENDS.has(String(data.type))) {
      // The response ended with a call still held (its `done` never came): judged as the closing
      // output has it, or, absent there, dropped as a cut-off call is; then the end as any other.
      const item = isObject(data.response) ? finalItem(data.response, h.itemId) : undefined;
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
    // A call whose `done` comes with no `added` before it: judged on the spot.
    if (
      data.type === 'response.output_item.done' &&
      isCall &&
      !this.judged.has(str((data.item as JsonObject).id) ?? '')
    ) {
      this.held = this.hold(data, f.raw);
      return this.release(data.item as JsonObject);
    }
    if (ENDS.has(String(data.type)) && isObject(data.response) && Array.isArray(data.response.output)) {
      let changed = false;
      const output = (data.response.output as unknown[]).map((it) => {
        if (!isObject(it)) return it;
        const id = str(it.id) ?? '';
        const was = this.replaced.get(id);
        if (was) {
          changed = true;
          return was;
        }
        // A call the stream never showed: judged here, where the client first sees it.
        if (!CLIENT_CALL_ITEMS.has(String(it.type)) || this.judged.has(id)) return it;
        this.judged.add(id);
        const d = this.judge(callOf(it));
        if (!d) return it;
        changed = true;
        return messageItem(id, d);
      });
      return changed ? frame(f.ev?.event, { ...data, response: { ...data.response, output } }) : f.raw;
    }
    return f.raw;
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
    this.judged.add(h.itemId);
    const d = this.judge(callOf(item));
    if (!d) return h.frames.join('');
    const msg = messageItem(h.itemId, d);
    this.replaced.set(h.itemId, msg);
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

/** The closing response's output item with this id, if it has one. */
function finalItem(response: JsonObject, id: string): JsonObject | undefined {
  if (!Array.isArray(response.output)) return undefined;
  for (const it of response.output as unknown[]) if (isObject(it) && str(it.id) === id) return it;
  return undefined;
}

export const responsesHold: ToolHold = {
  createStream: (judge) => framedHold(new ResponsesHold(judge)),

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
