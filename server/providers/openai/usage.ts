import { emptyUsage, type Usage } from '../../../shared/usage';
import { isObject, num } from '../common';

/**
 * OpenAI counts cached tokens inside the prompt/input total; the bridge's `input` excludes them,
 * so `input = prompt_tokens - cached_tokens`. Reasoning is part of output and also reported alone.
 * Some compatible servers (xAI, Gemini's OpenAI endpoint) leave reasoning out of the completion
 * count, though they bill it as output: their `total` is larger than prompt and completion, and
 * that excess is output the completion count left out.
 */
function normalise(
  prompt: unknown,
  cached: unknown,
  completion: unknown,
  reasoning: unknown,
  total: unknown,
): Usage {
  const c = num(cached);
  const excess = Math.max(0, num(total) - num(prompt) - num(completion));
  return {
    ...emptyUsage(),
    input: Math.max(0, num(prompt) - c),
    cacheRead: c,
    output: num(completion) + excess,
    reasoning: Math.max(num(reasoning), excess),
  };
}

/**
 * Chat Completions: `prompt_tokens`, `completion_tokens` and their `_details`. An audio model's
 * audio (`audio_tokens` in each) is billed at its own prices, up to thirteen times text's: kept as
 * the audio parts of input and output. Chat does not say which cached tokens were audio, so the
 * audio is taken as uncached, never more than the uncached input.
 */
export function chatUsage(u: unknown): Usage {
  if (!isObject(u)) return emptyUsage();
  const p = isObject(u.prompt_tokens_details) ? u.prompt_tokens_details : {};
  const c = isObject(u.completion_tokens_details) ? u.completion_tokens_details : {};
  const usage = normalise(
    u.prompt_tokens,
    p.cached_tokens,
    u.completion_tokens,
    c.reasoning_tokens,
    u.total_tokens,
  );
  const inputAudio = Math.min(usage.input, num(p.audio_tokens));
  const outputAudio = Math.min(usage.output, num(c.audio_tokens));
  if (inputAudio > 0) usage.inputAudio = inputAudio;
  if (outputAudio > 0) usage.outputAudio = outputAudio;
  return usage;
}

/** Responses: `input_tokens`, `output_tokens` and their `_details`. */
export function responsesUsage(u: unknown): Usage {
  if (!isObject(u)) return emptyUsage();
  const i = isObject(u.input_tokens_details) ? u.input_tokens_details : {};
  const o = isObject(u.output_tokens_details) ? u.output_tokens_details : {};
  return normalise(u.input_tokens, i.cached_tokens, u.output_tokens, o.reasoning_tokens, u.total_tokens);
}
