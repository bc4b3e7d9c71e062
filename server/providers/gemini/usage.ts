import { emptyUsage, type Usage } from '../../../shared/usage';
import { isObject, num } from '../common';

/** The tokens a `ModalityTokenCount` list gives `modality` (`AUDIO`, `IMAGE`...). */
function modality(details: unknown, name: string): number {
  if (!Array.isArray(details)) return 0;
  let n = 0;
  for (const d of details as unknown[]) if (isObject(d) && d.modality === name) n += num(d.tokenCount);
  return n;
}

/**
 * `usageMetadata`: `promptTokenCount` includes the cached part (`cachedContentTokenCount`), the
 * bridge's `input` does not. Tool-use prompt tokens (the results of Google's own tools fed back
 * in) are billed as input. Thinking is billed as output but reported apart from
 * `candidatesTokenCount`, so `output` is their sum and `reasoning` the thoughts. Audio in and
 * images out are billed at their own prices (3 to 12 times text's): their parts are kept from the
 * modality lists, never more than the count they are part of.
 */
export function geminiUsage(u: unknown): Usage {
  if (!isObject(u)) return emptyUsage();
  const cached = num(u.cachedContentTokenCount);
  const thoughts = num(u.thoughtsTokenCount);
  const usage: Usage = {
    ...emptyUsage(),
    input: Math.max(0, num(u.promptTokenCount) - cached) + num(u.toolUsePromptTokenCount),
    cacheRead: cached,
    output: num(u.candidatesTokenCount) + thoughts,
    reasoning: thoughts,
  };
  const cacheReadAudio = Math.min(cached, modality(u.cacheTokensDetails, 'AUDIO'));
  const inputAudio = Math.min(
    usage.input,
    Math.max(0, modality(u.promptTokensDetails, 'AUDIO') - cacheReadAudio),
  );
  const candidates = num(u.candidatesTokenCount);
  const outputImage = Math.min(candidates, modality(u.candidatesTokensDetails, 'IMAGE'));
  const outputAudio = Math.min(candidates - outputImage, modality(u.candidatesTokensDetails, 'AUDIO'));
  if (inputAudio > 0) usage.inputAudio = inputAudio;
  if (cacheReadAudio > 0) usage.cacheReadAudio = cacheReadAudio;
  if (outputImage > 0) usage.outputImage = outputImage;
  if (outputAudio > 0) usage.outputAudio = outputAudio;
  return usage;
}
