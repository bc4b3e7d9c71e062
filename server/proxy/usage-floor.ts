import type { ResponseFacts } from '../core/facts';

/**
 * Bytes of a request body per input token for the floor: prose and code run about 3 to 4, and a
 * body's JSON punctuation adds bytes the provider does not count, so 4 leans low.
 */
const BYTES_PER_TOKEN = 4;

/**
 * Whether an SSE event carries generated content: Anthropic's `content_block_delta`, a Responses
 * `response.….delta`, or an unnamed chunk (Chat Completions, Gemini) other than `[DONE]`. Each
 * holds at least one token of output, so their count is a floor under what the model generated.
 */
export function isContentEvent(event: string | undefined, data: string): boolean {
  if (event === undefined || event === '' || event === 'message') return data !== '[DONE]';
  return event === 'content_block_delta' || (event.startsWith('response.') && event.endsWith('.delta'));
}

/**
 * The facts of a whole answer the client received but the bridge could not read (not JSON, or past
 * the bridge's read limit): no usage can be read from it, so the floor is the request body and the
 * answer's own size, four bytes a token each, marked `usageEstimated`.
 */
export function unreadAnswerFacts(
  bodyBytes: number,
  answerBytes: number,
  maxOutputTokens?: number | null,
): ResponseFacts {
  const output = Math.ceil(answerBytes / BYTES_PER_TOKEN);
  return {
    usage: {
      input: Math.ceil(bodyBytes / BYTES_PER_TOKEN),
      // No more than the request let the model write: a 40 MB answer read no further than the
      // bridge's limit was billed 10 million tokens against a max_tokens of 1,024.
      output: maxOutputTokens ? Math.min(output, maxOutputTokens) : output,
      cacheRead: 0,
      cacheWrite: 0,
      reasoning: 0,
    },
    toolCalls: [],
    model: null,
    error: null,
    usageEstimated: true,
  };
}

/** How a streamed round ended, for its usage floor. */
export interface StreamSeen {
  /** Content events relayed (isContentEvent). */
  contentEvents: number;
  /** The request body's size as sent upstream. */
  bodyBytes: number;
  /** Whether the stream said why it stopped (a finish or stop reason); false: it ended without. */
  finished?: boolean;
  /**
   * `complete`: the provider ended the stream (its usage is final, if it sent any); `abandoned`:
   * the client left first, so the usage events at the end (Chat Completions' last chunk,
   * Responses' `response.completed`, Anthropic's `message_delta`) may never have come.
   */
  ended: 'complete' | 'abandoned';
  /**
   * How long the provider worked before the stream's first content event (or, with none, before
   * it was cut), in ms: output generated there was not shown (hidden reasoning: Anthropic's
   * `display: "omitted"` thinking, OpenAI's reasoning models).
   */
  hiddenMs?: number;
  /** The request's output cap, when it names one: the hidden estimate never passes it. */
  maxOutputTokens?: number | null;
}

/**
 * Output tokens a second that the hidden estimate assumes: below the generation speed of the
 * models agents use (40 to 150 a second), so it leans low as the rest of the floor does, and the
 * second or two a prompt takes to be read before any output adds a few dozen tokens at most.
 */
export const HIDDEN_TOKENS_PER_SECOND = 20;

/**
 * A streamed answer's usage, never below what the stream shows was used. Providers report usage
 * at a stream's end; a client that leaves before it (having read the answer) would otherwise be
 * recorded, priced and charged to its budgets as zero tokens, while the provider bills the
 * organisation (docs/spend.md, "Streams without usage"). The floor: the body's size as input
 * when the provider reported no input, and one token per content event as output, when the client
 * left or the provider reported no output; when it was cut, also the output generated before
 * anything was shown (`hiddenMs` at HIDDEN_TOKENS_PER_SECOND, as reasoning, up to the output cap).
 * Facts raised by it are marked `usageEstimated`.
 */
export function withUsageFloor(facts: ResponseFacts, seen: StreamSeen): ResponseFacts {
  const u = facts.usage;
  const abandoned = seen.ended === 'abandoned';
  // A stream that relayed nothing and ended as the provider meant it used what it says.
  if (!abandoned && seen.contentEvents === 0) return facts;
  const input =
    u.input + u.cacheRead + u.cacheWrite > 0 ? u.input : Math.ceil(seen.bodyBytes / BYTES_PER_TOKEN);
  // A stream that ended without its finish and whose usage says no more than the placeholder its
  // start gave (a clean close before Anthropic's message_delta: message_start says 1 output token)
  // used at least a token per content event it relayed. Output a server reported at its end stands.
  const unfinished = seen.finished === false && u.output <= 1;
  let output = abandoned || u.output === 0 || unfinished ? Math.max(u.output, seen.contentEvents) : u.output;
  let reasoning = u.reasoning;
  // Cut before its usage came: what the provider generated before anything was shown is billed
  // too. A member who hid the reasoning and left once the answer was shown was recorded at 2 %.
  if (abandoned) {
    const shown = output;
    let hidden = Math.floor(((seen.hiddenMs ?? 0) / 1000) * HIDDEN_TOKENS_PER_SECOND);
    const cap = seen.maxOutputTokens;
    if (cap !== undefined && cap !== null) hidden = Math.min(hidden, Math.max(0, cap - shown));
    if (hidden > u.reasoning) {
      output = shown + hidden - u.reasoning;
      reasoning = hidden;
    }
  }
  if (input === u.input && output === u.output && reasoning === u.reasoning) return facts;
  return { ...facts, usage: { ...u, input, output, reasoning }, usageEstimated: true };
}
