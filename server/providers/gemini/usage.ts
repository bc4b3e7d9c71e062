import { emptyUsage, type Usage } from '../../../shared/usage';
import { isObject, num } from '../common';

/**
 * `usageMetadata`: `promptTokenCount` includes the cached part (`cachedContentTokenCount`), the
 * bridge's `input` does not. Tool-use prompt tokens (the results of Google's own tools fed back
 * in) are billed as input. Thinking is billed as output but reported apart from
 * `candidatesTokenCount`, so `output` is their sum and `reasoning` the thoughts.
 */
export function geminiUsage(u: unknown): Usage {
  if (!isObject(u)) return emptyUsage();
  const cached = num(u.cachedContentTokenCount);
  const thoughts = num(u.thoughtsTokenCount);
  return {
    ...emptyUsage(),
    input: Math.max(0, num(u.promptTokenCount) - cached) + num(u.toolUsePromptTokenCount),
    cacheRead: cached,
    output: num(u.candidatesTokenCount) + thoughts,
    reasoning: thoughts,
  };
}
