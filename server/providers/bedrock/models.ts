/** Bedrock's cross-region inference profiles prefix the model id with a geography. */
export const REGIONAL = /^(us|eu|apac|global|us-gov|jp|au|ca)\./;

/** A Bedrock model id or inference profile as AWS's price data names it: an ARN's account part dropped. */
export function bedrockIdOf(id: string): string {
  const m = id.trim();
  const slash = m.lastIndexOf('/');
  return m.startsWith('arn:') && slash !== -1 ? m.slice(slash + 1) : m;
}

/**
 * The Anthropic model name a Bedrock model id or inference-profile ARN is priced as:
 * `arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0`
 * and `anthropic.claude-3-5-haiku-20241022-v1:0` become `claude-sonnet-4-5-20250929` and
 * `claude-3-5-haiku-20241022`, the names the price data knows.
 */
export function priceModelOf(id: string): string {
  let m = bedrockIdOf(id);
  m = m.replace(REGIONAL, '');
  m = m.replace(/^anthropic\./, '');
  return m.replace(/-v\d+(:\d+)?$/, '');
}
