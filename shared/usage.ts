/**
 * Token usage, normalised the same way for every wire API:
 * - `input`: input tokens not read from or written to the cache
 * - `cacheRead` / `cacheWrite`: cached input tokens read / written
 * - `output`: output tokens, reasoning included
 * - `reasoning`: the part of `output` spent on reasoning, where the provider reports it
 * - `cacheWrite1h`: the part of `cacheWrite` written to the one-hour cache (priced higher), where
 *   the provider reports it (Anthropic's `cache_creation.ephemeral_1h_input_tokens`)
 * - `webSearches`: searches the provider's web search tool ran (priced per thousand)
 * - `fileSearches`: searches the provider's file search tool ran over stored files (OpenAI's
 *   `file_search`, priced per thousand)
 * - `inputAudio` / `cacheReadAudio`: the audio part of `input` / `cacheRead`, and `outputAudio` /
 *   `outputImage`: the audio and image parts of `output`, where the provider reports modalities
 *   (Gemini's `promptTokensDetails`, `cacheTokensDetails`, `candidatesTokensDetails`): priced apart
 *   where the price data has their own price (Gemini's audio input, its images out)
 * These last ones are only there when not zero.
 */
export interface Usage {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
  reasoning: number;
  cacheWrite1h?: number;
  webSearches?: number;
  fileSearches?: number;
  inputAudio?: number;
  cacheReadAudio?: number;
  outputAudio?: number;
  outputImage?: number;
}

/** The counts only there when not zero, summed alike. */
export const OPTIONAL_USAGE = [
  'cacheWrite1h',
  'webSearches',
  'fileSearches',
  'inputAudio',
  'cacheReadAudio',
  'outputAudio',
  'outputImage',
] as const;

export function emptyUsage(): Usage {
  return { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, reasoning: 0 };
}

export function addUsage(a: Usage, b: Usage): Usage {
  const sum: Usage = {
    input: a.input + b.input,
    output: a.output + b.output,
    cacheRead: a.cacheRead + b.cacheRead,
    cacheWrite: a.cacheWrite + b.cacheWrite,
    reasoning: a.reasoning + b.reasoning,
  };
  for (const k of OPTIONAL_USAGE) {
    const n = (a[k] ?? 0) + (b[k] ?? 0);
    if (n > 0) sum[k] = n;
  }
  return sum;
}

export function totalTokens(u: Usage): number {
  return u.input + u.output + u.cacheRead + u.cacheWrite;
}
