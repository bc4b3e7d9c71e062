import type { JsonObject, SseEvent } from './wire';

/** A tool call as the model asked for it, once it is complete. */
export interface HeldCall {
  id: string;
  name: string;
  /** Arguments parsed as JSON where they are JSON, else the raw text. */
  input: unknown;
}

/** Why a call is not passed on: the rule, and the text the client gets in its place. */
export interface Denial {
  rule: string;
  message: string;
}

/** Decides a complete call: a denial, or undefined to let it through. */
export type ToolJudge = (call: HeldCall) => Denial | undefined;

/** SSE text in as it arrives, SSE text out: what the client may see now. */
export interface StreamHold {
  push(text: string): string;
  /** The stream ended: whatever is still held. */
  end(): string;
}

/**
 * The tool-call policy capability of a wire API (docs/governance.md): how its client-side tool
 * calls are held while they stream in and replaced by a text block when denied, in a stream and in
 * a whole JSON answer, with the stop reason made consistent with what is left.
 */
export interface ToolHold {
  createStream(judge: ToolJudge): StreamHold;
  /**
   * Why calls this request may produce could not be held (a form of call the hold does not read),
   * as the message of `400 unsupported_parameter`; null when they can. Asked only when a deny
   * rule applies to the caller: otherwise nothing is held, and every form is served.
   */
  unheld?(body: JsonObject): string | null;
  /** The answer with denied calls replaced; undefined when nothing was denied (send the bytes as they came). */
  rewriteJson(json: unknown, judge: ToolJudge): unknown;
}

/** One SSE event as it came (`raw`, its blank-line terminator included) and as read. */
export interface SseFrame {
  raw: string;
  /** Undefined for a frame with no data line (comments, keep-alives). */
  ev: SseEvent | undefined;
}

/** A wire API's rule for frames: text out for each frame in, and for the end. */
export interface FrameRewriter {
  onFrame(frame: SseFrame): string;
  end(): string;
}

/** Reads a frame's fields as the SSE spec says (data lines joined by newlines, one leading space dropped). */
export function parseFrame(raw: string): SseEvent | undefined {
  let event: string | undefined;
  let id: string | undefined;
  const data: string[] = [];
  for (const line of raw.split(/\r\n|\r|\n/)) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id') id = value;
  }
  return data.length === 0 ? undefined : { event, data: data.join('\n'), id };
}

/**
 * A StreamHold from a frame rewriter: splits the text into whole SSE frames, keeping each frame's
 * bytes exactly as sent, so whatever the rewriter passes on is byte-identical to the upstream.
 */
export function framedHold(rewriter: FrameRewriter): StreamHold {
  let buffer = '';
  return {
    push(text) {
      buffer += text;
      let out = '';
      let frameStart = 0;
      let lineStart = 0;
      let i = 0;
      while (i < buffer.length) {
        const c = buffer.charCodeAt(i);
        if (c !== 10 && c !== 13) {
          i++;
          continue;
        }
        let next = i + 1;
        if (c === 13) {
          // A `\r` at the very end may be the first half of `\r\n`: wait for the next chunk.
          if (next === buffer.length) break;
          if (buffer.charCodeAt(next) === 10) next++;
        }
        const blank = i === lineStart;
        lineStart = next;
        i = next;
        if (blank) {
          const raw = buffer.slice(frameStart, next);
          out += rewriter.onFrame({ raw, ev: parseFrame(raw) });
          frameStart = next;
        }
      }
      buffer = buffer.slice(frameStart);
      return out;
    },
    end() {
      let out = '';
      if (buffer !== '') {
        // A last frame without its blank line: still an event to the client's parser.
        const raw = buffer;
        buffer = '';
        out += rewriter.onFrame({ raw, ev: parseFrame(raw) });
      }
      return out + rewriter.end();
    },
  };
}

/** An SSE frame for an event the bridge writes itself. */
export function frame(event: string | undefined, data: unknown): string {
  return `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`;
}
