import { pipeline, Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { Dispatcher } from 'undici';

/**
 * Answers shaped like an upstream response, for a family that sends its own requests (`send`):
 * the exchange reads only the status, the headers and the body as an async iterable it may
 * destroy, so a plain Readable stands in for undici's body.
 */

/** The upstream response with its status, headers and body replaced; destroying the new body destroys the upstream's. */
export function withBody(
  res: Dispatcher.ResponseData,
  statusCode: number,
  headers: Dispatcher.ResponseData['headers'],
  chunks: Iterable<Buffer> | AsyncIterable<Buffer>,
): Dispatcher.ResponseData {
  const body = Readable.from(chunks, { objectMode: false });
  body.on('close', () => res.body.destroy());
  return { ...res, statusCode, headers, body: body as unknown as Dispatcher.ResponseData['body'] };
}

/** A whole JSON answer the bridge composed in place of the upstream's (an error mapped to the client's shape). */
export function jsonAnswer(
  res: Dispatcher.ResponseData,
  status: number,
  body: unknown,
  extra: Record<string, string>,
): Dispatcher.ResponseData {
  const bytes = Buffer.from(JSON.stringify(body));
  const headers = {
    ...res.headers,
    ...extra,
    'content-type': 'application/json',
    'content-length': String(bytes.length),
  };
  return withBody(res, status, headers, [bytes]);
}

/** An answer the bridge gives without asking the upstream (a request it cannot map). */
export function localAnswer(status: number, body: unknown): Dispatcher.ResponseData {
  const bytes = Buffer.from(JSON.stringify(body));
  return {
    statusCode: status,
    statusText: '',
    headers: { 'content-type': 'application/json', 'content-length': String(bytes.length) },
    trailers: {},
    opaque: null,
    context: {},
    body: Readable.from([bytes]) as unknown as Dispatcher.ResponseData['body'],
  };
}

/**
 * The most of an upstream's small answer (an error, a token count) a family reads whole to map it:
 * real ones are a few KB, and an endpoint that streams without end must not grow the bridge.
 */
export const SMALL_ANSWER_LIMIT = 1024 * 1024;

/** An upstream body read whole up to `limit` bytes; the rest is not read (the body is destroyed). */
export async function readSmall(
  body: Dispatcher.ResponseData['body'],
  limit = SMALL_ANSWER_LIMIT,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= limit) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks, size).subarray(0, limit);
}

/**
 * The answer with its body decoded when the upstream compressed it (gzip, deflate, br) although it
 * was asked for `accept-encoding: identity` (a proxy in front of it may do so): the bridge meters
 * and holds the text, and relays it decoded, without the encoding header. Compressed, a stream was
 * recorded as free and its tool calls unseen. Other encodings are left as they are.
 */
export function decodedAnswer(res: Dispatcher.ResponseData): Dispatcher.ResponseData {
  const raw = res.headers['content-encoding'];
  // An error answer is relayed as it came (it is not metered), and an empty body has nothing to decode.
  if (raw === undefined || res.statusCode >= 400 || res.headers['content-length'] === '0') return res;
  const encoding = (Array.isArray(raw) ? raw.join(',') : raw).trim().toLowerCase();
  // Ended leniently: an empty or cut-short body ends the answer where it ends, as it would have
  // undecoded, not with a decoder's error. (`deflate` is left as it is: servers send it with and
  // without its zlib header alike.)
  const decoder =
    encoding === 'gzip' || encoding === 'x-gzip'
      ? zlib.createGunzip({ finishFlush: zlib.constants.Z_SYNC_FLUSH })
      : encoding === 'br'
        ? zlib.createBrotliDecompress({ finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH })
        : undefined;
  if (!decoder) return res;
  const headers = { ...res.headers };
  delete headers['content-encoding'];
  delete headers['content-length'];
  // An error on either side ends the other: the exchange sees it as the body failing.
  pipeline(res.body, decoder, () => undefined);
  return { ...res, headers, body: decoder as unknown as Dispatcher.ResponseData['body'] };
}
