import { EventStreamCodec } from '@smithy/eventstream-codec';
import { fromUtf8, toUtf8 } from '@smithy/util-utf8';
import { isObject } from '../common';
import { mapAwsError } from './errors';

const codec = new EventStreamCodec(toUtf8, fromUtf8);

/** The bytes are not a well-formed Bedrock event stream (as opposed to the connection failing). */
class StreamFormatError extends Error {}

/**
 * The longest event-stream message taken (AWS's event-stream limit): Bedrock's chunks are a few KB,
 * and a prelude declaring more is a broken or hostile upstream, not a message worth waiting for.
 */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * Whole event-stream messages out of arbitrary chunks: each starts with its total length
 * (big-endian uint32). Chunks wait in a list and are joined once a message is complete, so a long
 * message costs one copy, not one per chunk.
 */
async function* frames(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let held: Uint8Array[] = [];
  let have = 0;
  /** The held bytes as one buffer (held then holds only it). */
  const joined = (): Buffer => {
    const one =
      held.length === 1
        ? Buffer.from(held[0]!.buffer, held[0]!.byteOffset, held[0]!.byteLength)
        : Buffer.concat(held, have);
    held = [one];
    return one;
  };
  for await (const chunk of chunks) {
    held.push(chunk);
    have += chunk.length;
    while (have >= 4) {
      let buf = held[0]!.length >= 4 ? held[0]! : joined();
      const total = Buffer.from(buf.buffer, buf.byteOffset, 4).readUInt32BE(0);
      if (total < 16) throw new StreamFormatError(`event-stream message of impossible length ${total}`);
      if (total > MAX_MESSAGE_BYTES)
        throw new StreamFormatError(
          `event-stream message of ${total} bytes, over the ${MAX_MESSAGE_BYTES} taken`,
        );
      if (have < total) break;
      buf = joined();
      yield buf.subarray(0, total);
      const rest = buf.subarray(total);
      held = rest.length > 0 ? [rest] : [];
      have = rest.length;
    }
  }
  if (have > 0) throw new StreamFormatError('the event stream ended inside a message');
}

function sse(type: string, data: string): string {
  return `event: ${type}\ndata: ${data}\n\n`;
}

function header(h: Record<string, { value: unknown }>, name: string): string {
  const v = h[name]?.value;
  return typeof v === 'string' ? v : '';
}

/** The Anthropic stream event a `chunk` message carries: `{"bytes": "<base64 of the event JSON>"}`. */
function eventOf(payload: string): string {
  const outer: unknown = JSON.parse(payload);
  if (!isObject(outer) || typeof outer.bytes !== 'string') throw new Error('a chunk without bytes');
  const json = Buffer.from(outer.bytes, 'base64').toString('utf8');
  const inner: unknown = JSON.parse(json);
  const type = isObject(inner) && typeof inner.type === 'string' ? inner.type : 'message';
  // A line break inside the JSON would end the SSE `data:` line early: written compact again then.
  return sse(type, json.includes('\n') || json.includes('\r') ? JSON.stringify(inner) : json);
}

/**
 * Bedrock's `application/vnd.amazon.eventstream` answer as Anthropic SSE, message by message as it
 * arrives: each `chunk` event's payload is the Anthropic stream event, sent as `event: <type>`;
 * an exception message (`:message-type: exception`) becomes Anthropic's `error` event and ends the
 * stream. The frames are checked (length, CRCs) and decoded by the SDK's codec.
 */
export async function* anthropicSse(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  try {
    for await (const frame of frames(chunks)) {
      let message: ReturnType<typeof codec.decode>;
      let event: string | undefined;
      try {
        message = codec.decode(frame);
        const isChunk =
          header(message.headers, ':message-type') === 'event' &&
          header(message.headers, ':event-type') === 'chunk';
        if (isChunk) event = eventOf(toUtf8(message.body));
      } catch (err) {
        throw new StreamFormatError((err as Error).message);
      }
      if (header(message.headers, ':message-type') === 'event') {
        if (event !== undefined) yield Buffer.from(event);
        continue;
      }
      const payload = toUtf8(message.body);
      const name = header(message.headers, ':exception-type') || header(message.headers, ':error-code');
      let text = header(message.headers, ':error-message');
      try {
        const j: unknown = JSON.parse(payload);
        if (isObject(j) && typeof j.message === 'string') text = j.message;
      } catch {
        // Not JSON: the header's message (or none) is all there is.
      }
      const mapped = mapAwsError(name, 0, text || 'Bedrock ended the stream with an error.');
      yield Buffer.from(sse('error', JSON.stringify(mapped.body)));
      return;
    }
  } catch (err) {
    // A failed connection is the exchange's to report; only a broken frame is answered here.
    if (!(err instanceof StreamFormatError)) throw err;
    // A broken frame: tell the client in its own shape rather than cutting the stream silently.
    const mapped = mapAwsError(
      '',
      502,
      `The Bedrock event stream could not be read (${(err as Error).message}).`,
    );
    yield Buffer.from(sse('error', JSON.stringify(mapped.body)));
  }
}
