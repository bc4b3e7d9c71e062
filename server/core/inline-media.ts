/**
 * Bytes of a request body per input token in the estimates made before a request runs (budget
 * reservations, tpm holds): leaning high, as an estimate that bounds spend must.
 */
export const ESTIMATE_BYTES_PER_TOKEN = 3;

/**
 * Bodies smaller than this are estimated by their size alone: the scan below would cost more than
 * it saves, and what inline images they hold cannot skew an estimate by much.
 */
const SCAN_FROM = 256 * 1024;
/** A base64 payload shorter than this is counted as text (an icon is cheap either way). */
const MIN_PAYLOAD = 1024;
/** How far before a payload its media type is looked for (`"media_type":"image/png","data":"`). */
const TYPE_WINDOW = 200;
/**
 * Input tokens one inline image is taken to cost: the most a provider counts for one (Anthropic's
 * images are resized to about 1.15 megapixels, ~1,600 tokens; OpenAI's high detail ~1,100;
 * Gemini's 258 a tile), whatever its size in base64.
 */
export const IMAGE_TOKENS = 1600;

const DATA_URL = Buffer.from(';base64,');
const DATA_FIELD = Buffer.from('"data":"');
const IMAGE = Buffer.from('image/');
const QUOTE = 0x22;

/**
 * A request body's size as the estimates count it (budget reservations, tpm holds: a token per
 * ESTIMATE_BYTES_PER_TOKEN bytes): an inline image (a `data:image/…;base64,` URL, or a `"data"` string
 * right after an `image/…` media type, as Anthropic's and Gemini's image parts put it) counts as
 * IMAGE_TOKENS tokens, not as its base64 size, which for a screenshot is hundreds of thousands of
 * "tokens" the provider never counts. Only images are taken out: a document (a PDF's pages) is
 * still counted by its size.
 */
export function estimatedBodyBytes(body: Buffer): number {
  if (body.length < SCAN_FROM) return body.length;
  let media = 0;
  let images = 0;
  for (const marker of [DATA_URL, DATA_FIELD]) {
    let at = body.indexOf(marker);
    while (at >= 0) {
      const from = at + marker.length;
      const end = body.indexOf(QUOTE, from);
      if (end < 0) break;
      const length = end - from;
      const before = body.subarray(Math.max(0, at - TYPE_WINDOW), at);
      if (length >= MIN_PAYLOAD && before.lastIndexOf(IMAGE) >= 0) {
        media += length;
        images++;
      }
      at = body.indexOf(marker, end + 1);
    }
  }
  return body.length - media + images * IMAGE_TOKENS * ESTIMATE_BYTES_PER_TOKEN;
}
