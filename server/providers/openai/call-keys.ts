import { isObject } from '../common';

/**
 * Which call of a Chat Completions stream a tool-call delta belongs to. OpenAI numbers them
 * (`index`); Gemini's OpenAI-compatible endpoint sends none, each call whole or in pieces under its
 * `id`. Read as index 0, every call of a turn was one: their arguments run together, the last name
 * won, and a deny rule on the first call judged the merged one. Without an index, a new `id` is a
 * new call and a delta with neither continues the choice's last call, as the AI SDK reads Gemini.
 */
export class CallKeys {
  private readonly byId = new Map<string, string>();
  private readonly last = new Map<number, string>();
  private unnumbered = 0;

  /** The call key (`choice:index`, or `choice:#n` for an unnumbered call) of one delta. */
  key(choice: number, delta: Record<string, unknown>): string {
    let k: string;
    if (typeof delta.index === 'number' && Number.isFinite(delta.index)) k = `${choice}:${delta.index}`;
    else if (typeof delta.id === 'string' && delta.id !== '') {
      const named = `${choice}\0${delta.id}`;
      k = this.byId.get(named) ?? `${choice}:#${this.unnumbered++}`;
      this.byId.set(named, k);
    } else k = this.last.get(choice) ?? `${choice}:0`;
    this.last.set(choice, k);
    return k;
  }
}

/** The tool-call deltas of a chunk in order, with their choice's index. */
export function toolCallDeltas(
  chunk: Record<string, unknown>,
): { choice: number; d: Record<string, unknown> }[] {
  const out: { choice: number; d: Record<string, unknown> }[] = [];
  if (!Array.isArray(chunk.choices)) return out;
  for (const c of chunk.choices as unknown[]) {
    if (!isObject(c) || !isObject(c.delta) || !Array.isArray(c.delta.tool_calls)) continue;
    const choice = typeof c.index === 'number' && Number.isFinite(c.index) ? c.index : 0;
    for (const d of c.delta.tool_calls as unknown[]) if (isObject(d)) out.push({ choice, d });
  }
  return out;
}

/**
 * The id a legacy `function_call` (Chat Completions before `tools`) goes by, one per choice: the
 * API gives it none. It is a tool call all the same, recorded, judged and flagged like one in
 * `tool_calls`.
 */
export function legacyCallId(choice: number): string {
  return `function_call_${choice}`;
}
