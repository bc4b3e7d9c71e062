import { emptyUsage, type Usage } from '../../../shared/usage';
import { isObject, num } from '../common';

/**
 * OpenAI counts cached tokens inside the prompt/input total; the bridge's `input` excludes them,
 * so `input = prompt_tokens - cached_tokens`. Reasoning is part of output and also reported alone.
 */
function normalise(total: unknown, cached: unknown, output: unknown, reasoning: unknown): Usage {
  const c = num(cached);
  return {
    ...emptyUsage(),
    input: Math.max(0, num(total) - c),
    cacheRead: c,
    output: num(output),
    reasoning: num(reasoning),
  };
}

/** Chat Completions: `prompt_tokens`, `completion_tokens` and their `_details`. */
export function chatUsage(u: unknown): Usage {
  if (!isObject(u)) return emptyUsage();
  const p = isObject(u.prompt_tokens_details) ? u.prompt_tokens_details : {};
  const c = isObject(u.completion_tokens_details) ? u.completion_tokens_details : {};
  return normalise(u.prompt_tokens, p.cached_tokens, u.completion_tokens, c.reasoning_tokens);
}

/** Responses: `input_tokens`, `output_tokens` and their `_details`. */
export function responsesUsage(u: unknown): Usage {
  if (!isObject(u)) return emptyUsage();
  const i = isObject(u.input_tokens_details) ? u.input_tokens_details : {};
  const o = isObject(u.output_tokens_details) ? u.output_tokens_details : {};
  return normalise(u.input_tokens, i.cached_tokens, u.output_tokens, o.reasoning_tokens);
}
