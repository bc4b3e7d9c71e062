import { isObject, str } from '../common';
import { eventJson } from '../injection';
import { type FrameRewriter, framedHold, type SseFrame, type ToolHold, type ToolJudge } from '../tool-hold';
import type { JsonObject } from '../wire';

/**
 * A chunk (or whole answer) with each denied `functionCall` part replaced by a text part carrying
 * the denial; undefined when nothing was denied. Gemini sends a call whole in one chunk and ends a
 * turn with calls as `STOP`, so nothing has to be held across chunks nor a finish reason changed.
 */
function rewriteChunk(chunk: JsonObject, judge: ToolJudge): JsonObject | undefined {
  if (!Array.isArray(chunk.candidates)) return undefined;
  let denied = false;
  const candidates = (chunk.candidates as unknown[]).map((cand) => {
    if (!isObject(cand) || !isObject(cand.content) || !Array.isArray(cand.content.parts)) return cand;
    const parts = (cand.content.parts as unknown[]).map((p) => {
      if (!isObject(p) || !isObject(p.functionCall)) return p;
      const fc = p.functionCall;
      const name = str(fc.name) ?? 'unknown';
      const denial = judge({ id: str(fc.id) ?? name, name, input: fc.args ?? {} });
      if (!denial) return p;
      denied = true;
      return { text: denial.message };
    });
    return { ...cand, content: { ...cand.content, parts } };
  });
  return denied ? { ...chunk, candidates } : undefined;
}

class StreamRewriter implements FrameRewriter {
  constructor(private readonly judge: ToolJudge) {}

  onFrame(f: SseFrame): string {
    const chunk = f.ev ? eventJson(f.ev) : undefined;
    const out = chunk ? rewriteChunk(chunk, this.judge) : undefined;
    return out ? `data: ${JSON.stringify(out)}\r\n\r\n` : f.raw;
  }

  end(): string {
    return '';
  }
}

/** The tool-call policy on `generateContent` answers and `streamGenerateContent` chunks (docs/governance.md). */
export const generateContentHold: ToolHold = {
  createStream: (judge) => framedHold(new StreamRewriter(judge)),

  // Code execution runs at Google on the model's say (`executableCode`), with nothing held before
  // it runs: under a deny rule, refused as Anthropic's and OpenAI's provider-run tools are.
  unheld: (body) => {
    const tools = Array.isArray(body.tools) ? body.tools : [];
    return tools.some((t) => isObject(t) && ('codeExecution' in t || 'code_execution' in t))
      ? 'Tool-call rules apply to you, and code execution runs at the provider before its code can be checked: leave the code execution tool out.'
      : null;
  },
  rewriteJson(json, judge) {
    if (Array.isArray(json)) {
      let denied = false;
      const out = (json as unknown[]).map((c) => {
        const r = isObject(c) ? rewriteChunk(c, judge) : undefined;
        if (r) denied = true;
        return r ?? c;
      });
      return denied ? out : undefined;
    }
    return isObject(json) ? rewriteChunk(json, judge) : undefined;
  },
};
