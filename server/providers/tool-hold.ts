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
  // The unfinished frame, in the pieces it came in: each chunk is scanned once, and a frame is
  // joined once, when it ends. Rescanning and re-concatenating the buffer on every chunk made one
  // 10 MB event (an image) take seconds, with the whole bridge waiting.
  let parts: string[] = [];
  /** The last character ended a line (or none has come): a line end now is a blank line. */
  let atLineStart = true;
  /** The last character was a `\r`: a `\n` next belongs to the same line end. */
  let afterCR = false;
  /** That `\r` was a blank line's, at a chunk's end: the frame ends after it, and after a `\n` next. */
  let endsAfterCR = false;
  const frameOf = (raw: string): string => rewriter.onFrame({ raw, ev: parseFrame(raw) });
  return {
    push(text) {
      // Nothing new: a `\r` that ended a blank line still waits for what follows it.
      if (text === '') return '';
      let out = '';
      let from = 0;
      if (endsAfterCR) {
        endsAfterCR = false;
        afterCR = false;
        from = text.charCodeAt(0) === 10 ? 1 : 0;
        parts.push(text.slice(0, from));
        out += frameOf(parts.join(''));
        parts = [];
      }
      for (let i = from; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (afterCR) {
          afterCR = false;
          if (c === 10) continue;
        }
        if (c !== 10 && c !== 13) {
          atLineStart = false;
          continue;
        }
        afterCR = c === 13;
        if (!atLineStart) {
          atLineStart = true;
          continue;
        }
        // A blank line: the frame ends with it (a `\r\n`'s `\n` included).
        if (c === 13) {
          if (i + 1 === text.length) {
            endsAfterCR = true;
            break;
          }
          if (text.charCodeAt(i + 1) === 10) i++;
          afterCR = false;
        }
        parts.push(text.slice(from, i + 1));
        out += frameOf(parts.join(''));
        parts = [];
        from = i + 1;
      }
      if (from < text.length) parts.push(text.slice(from));
      return out;
    },
    end() {
      let out = '';
      const raw = parts.join('');
      parts = [];
      endsAfterCR = false;
      // A last frame without its blank line: still an event to the client's parser.
      if (raw !== '') out += frameOf(raw);
      return out + rewriter.end();
    },
  };
}

/** An SSE frame for an event the bridge writes itself. */
export function frame(event: string | undefined, data: unknown): string {
  return `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`;
}
