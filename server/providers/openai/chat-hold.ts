import { argumentsOf, isObject, num, str } from '../common';
import { eventJson } from '../injection';
import {
  type Denial,
  type FrameRewriter,
  framedHold,
  type SseFrame,
  type ToolHold,
  type ToolJudge,
} from '../tool-hold';
import type { JsonObject } from '../wire';
import { CallKeys, legacyCallId, toolCallDeltas } from './call-keys';

interface Assembled {
  id: string;
  name: string;
  args: string;
}

interface HeldChunk {
  raw: string;
  chunk: JsonObject | undefined;
  /** The call key of each of its tool-call deltas, in order (call-keys.ts). */
  keys: string[];
}

/** The choices a chunk finishes. */
function finished(chunk: JsonObject): number[] {
  if (!Array.isArray(chunk.choices)) return [];
  return (chunk.choices as unknown[]).flatMap((c) =>
    isObject(c) && typeof c.finish_reason === 'string' ? [num(c.index)] : [],
  );
}

/**
 * Chat Completions streams a turn's tool calls as deltas keyed by index, and a call is complete only
 * when the next starts or the choice finishes: from the first tool-call delta to the chunk with
 * `finish_reason`, the chunks are held. If nothing is denied they go out as they came; otherwise the
 * denied calls' deltas are taken out (the others renumbered), a content delta with the message is
 * sent before the finishing chunk, and `finish_reason` becomes `stop` when no call is left.
 */
class ChatHold implements FrameRewriter {
  private held: HeldChunk[] | undefined;
  private readonly calls = new Map<string, Assembled>();
  private readonly keys = new CallKeys();
  /** Choices that finished while calls were held. */
  private readonly done = new Set<number>();

  constructor(private readonly judge: ToolJudge) {}

  onFrame(f: SseFrame): string {
    const chunk = f.ev && f.ev.data !== '[DONE]' ? eventJson(f.ev) : undefined;
    const deltas = chunk ? toolCallDeltas(chunk) : [];
    // The legacy form (`function_call`), which an upstream may answer a `tools` request with: a
    // call the client runs all the same, held and judged as one (its key `<choice>:fc`).
    const legacy = chunk ? legacyCallDeltas(chunk) : [];
    if (!this.held) {
      if (deltas.length === 0 && legacy.length === 0) return f.raw;
      this.held = [];
    }
    const keys = deltas.map(({ choice, d }) => this.keys.key(choice, d));
    this.held.push({ raw: f.raw, chunk, keys });
    const parts: [string, Record<string, unknown>, Record<string, unknown> | undefined][] = [
      ...deltas.map(({ d }, i): [string, Record<string, unknown>, Record<string, unknown> | undefined] => [
        keys[i]!,
        d,
        isObject(d.function) ? d.function : isObject(d.custom) ? d.custom : undefined,
      ]),
      ...legacy.map(({ choice, fc }): [string, Record<string, unknown>, Record<string, unknown>] => [
        legacyKey(choice),
        { id: legacyCallId(choice) },
        fc,
      ]),
    ];
    for (const [key, d, fn] of parts) {
      let c = this.calls.get(key);
      if (!c) {
        c = { id: '', name: '', args: '' };
        this.calls.set(key, c);
      }
      if (typeof d.id === 'string') c.id = d.id;
      if (fn) {
        // Replaced, never appended, as the client's SDK assembles it (some servers repeat it per delta).
        if (typeof fn.name === 'string' && fn.name !== '') c.name = fn.name;
        c.args += argumentText(fn.arguments ?? fn.input);
      }
    }
    // `[DONE]` without a finishing chunk, or every choice with calls finished: the calls are
    // complete. Not the first choice to finish: with `n` > 1 the choices interleave, and another
    // choice's call may have only part of its arguments yet (judged on those, the rest would
    // follow unheld, under no name, and the client would assemble the whole call).
    if (f.ev?.data === '[DONE]') return this.release();
    const ending = chunk ? finished(chunk) : [];
    if (ending.length === 0) return '';
    for (const i of ending) this.done.add(i);
    for (const key of this.calls.keys()) if (!this.done.has(Number(key.split(':')[0]))) return '';
    return this.release();
  }

  end(): string {
    return this.held ? this.release() : '';
  }

  private release(): string {
    const held = this.held!;
    this.held = undefined;
    this.done.clear();
    const denials = new Map<string, Denial>();
    for (const [key, c] of this.calls) {
      const d = this.judge({ id: c.id, name: c.name || 'unknown', input: argumentsOf(c.args) });
      if (d) denials.set(key, d);
    }
    if (denials.size === 0) {
      this.calls.clear();
      return held.map((h) => h.raw).join('');
    }
    // Per choice: the messages to show, how many calls are left, and their new indexes.
    const messages = new Map<number, string[]>();
    const left = new Map<number, number>();
    const renumber = new Map<string, number>();
    for (const key of this.calls.keys()) {
      const choice = Number(key.split(':')[0]);
      const d = denials.get(key);
      if (d) messages.set(choice, [...(messages.get(choice) ?? []), d.message]);
      else {
        renumber.set(key, left.get(choice) ?? 0);
        left.set(choice, (left.get(choice) ?? 0) + 1);
      }
    }
    this.calls.clear();
    let out = '';
    for (const h of held) {
      if (!h.chunk || !Array.isArray(h.chunk.choices)) {
        out += h.raw;
        continue;
      }
      let keep = 'usage' in h.chunk && h.chunk.usage !== null;
      const choices: unknown[] = [];
      // The deltas come in the order their keys were taken (toolCallDeltas).
      let nth = 0;
      for (const c of h.chunk.choices as unknown[]) {
        if (!isObject(c)) continue;
        const ci = num(c.index);
        let delta = isObject(c.delta) ? c.delta : {};
        if (Array.isArray(delta.tool_calls)) {
          const kept = (delta.tool_calls as unknown[]).flatMap((d) => {
            if (!isObject(d)) return [];
            const n = renumber.get(h.keys[nth++] ?? '');
            return n === undefined ? [] : [{ ...d, index: n }];
          });
          const { tool_calls: _calls, ...rest } = delta;
          delta = kept.length > 0 ? { ...rest, tool_calls: kept } : rest;
        }
        if (isObject(delta.function_call) && denials.has(legacyKey(ci))) {
          const { function_call: _call, ...rest } = delta;
          delta = rest;
        }
        let finish = c.finish_reason;
        if (typeof finish === 'string') {
          const msgs = messages.get(ci);
          if (msgs) {
            // The message goes just before the choice finishes, in a chunk of its own.
            // The chunk's ids and model, never its usage (which the finishing chunk still carries).
            const { usage, choices: _all, ...base } = h.chunk;
            const message = {
              ...base,
              choices: [
                { index: ci, delta: { content: msgs.join('\n') }, logprobs: null, finish_reason: null },
              ],
              ...(usage === undefined ? {} : { usage: null }),
            };
            out += `data: ${JSON.stringify(message)}\n\n`;
            messages.delete(ci);
          }
          if ((finish === 'tool_calls' || finish === 'function_call') && (left.get(ci) ?? 0) === 0)
            finish = 'stop';
        }
        const empty = Object.keys(delta).length === 0 && typeof finish !== 'string';
        if (!empty) {
          keep = true;
          choices.push({ ...c, delta, finish_reason: finish });
        }
      }
      if (keep) out += `data: ${JSON.stringify({ ...h.chunk, choices })}\n\n`;
    }
    // A stream cut before the finishing chunk still shows what was blocked.
    for (const [ci, msgs] of messages)
      out += `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: ci, delta: { content: msgs.join('\n') }, finish_reason: null }] })}\n\n`;
    return out;
  }
}

/** The key a choice's legacy `function_call` is held under (beside its `tool_calls`' keys). */
function legacyKey(choice: number): string {
  return `${choice}:fc`;
}

/** The legacy `function_call` deltas of a chunk, with their choice's index. */
function legacyCallDeltas(chunk: JsonObject): { choice: number; fc: Record<string, unknown> }[] {
  if (!Array.isArray(chunk.choices)) return [];
  return (chunk.choices as unknown[]).flatMap((c) =>
    isObject(c) && isObject(c.delta) && isObject(c.delta.function_call)
      ? [{ choice: num(c.index), fc: c.delta.function_call }]
      : [],
  );
}

/** A delta's piece of arguments as text: a string as it is, anything else (an object sent whole) as JSON. */
function argumentText(v: unknown): string {
  if (typeof v === 'string') return v;
  return v === undefined || v === null ? '' : (JSON.stringify(v) ?? '');
}

export const chatHold: ToolHold = {
  createStream: (judge) => framedHold(new ChatHold(judge)),

  // The pre-`tools` form answers with `function_call`, which the hold does not read: served under
  // a deny rule, it was a way round every rule a member could pick per request.
  unheld: (body) =>
    body.functions !== undefined || body.function_call !== undefined
      ? 'Tool-call rules apply to you, and the legacy `functions` / `function_call` parameters cannot be checked against them: send the functions as `tools` (and `tool_choice`).'
      : null,

  rewriteJson(json, judge) {
    if (!isObject(json) || !Array.isArray(json.choices)) return undefined;
    let denied = false;
    const choices = (json.choices as unknown[]).map((c) => {
      if (!isObject(c) || !isObject(c.message)) return c;
      const msgs: string[] = [];
      const calls = Array.isArray(c.message.tool_calls) ? (c.message.tool_calls as unknown[]) : [];
      const kept = calls.filter((tc) => {
        if (!isObject(tc)) return true;
        const fn = isObject(tc.function) ? tc.function : isObject(tc.custom) ? tc.custom : undefined;
        const d = judge({
          id: str(tc.id) ?? '',
          name: str(fn?.name) ?? 'unknown',
          input: argumentsOf(fn?.arguments ?? fn?.input),
        });
        if (d) msgs.push(d.message);
        return !d;
      });
      // The legacy form, which an upstream may answer a `tools` request with: judged as a call.
      const fc = isObject(c.message.function_call) ? c.message.function_call : undefined;
      const fcDenial = fc
        ? judge({
            id: legacyCallId(num(c.index)),
            name: str(fc.name) ?? 'unknown',
            input: argumentsOf(fc.arguments),
          })
        : undefined;
      if (fcDenial) msgs.push(fcDenial.message);
      if (msgs.length === 0) return c;
      denied = true;
      const { tool_calls: _calls, function_call: _fc, ...message } = c.message;
      const text = [str(message.content), ...msgs].filter((t) => t !== null && t !== '').join('\n');
      const left = kept.length > 0 || (fc !== undefined && !fcDenial);
      return {
        ...c,
        message: {
          ...message,
          content: text,
          ...(kept.length > 0 ? { tool_calls: kept } : {}),
          ...(fc && !fcDenial ? { function_call: fc } : {}),
        },
        finish_reason:
          !left && (c.finish_reason === 'tool_calls' || c.finish_reason === 'function_call')
            ? 'stop'
            : c.finish_reason,
      };
    });
    return denied ? { ...json, choices } : undefined;
  },
};
