import { isObject } from '../common';
import type { JsonObject } from '../types';
import { REGIONAL } from './models';

/** The `anthropic_version` Bedrock's Claude models take in the body. */
export const BEDROCK_VERSION = 'bedrock-2023-05-31';

/**
 * The `anthropic-beta` values Bedrock accepts for Claude. Clients such as Claude Code send
 * first-party-only betas too, and Bedrock refuses a request naming one it does not know.
 */
export const BEDROCK_BETAS: ReadonlySet<string> = new Set([
  'computer-use-2024-10-22',
  'computer-use-2025-01-24',
  'computer-use-2025-11-24',
  'token-efficient-tools-2025-02-19',
  'interleaved-thinking-2025-05-14',
  'output-128k-2025-02-19',
  'dev-full-thinking-2025-05-14',
  'context-1m-2025-08-07',
  'context-management-2025-06-27',
  'fine-grained-tool-streaming-2025-05-14',
  'tool-search-tool-2025-10-19',
  'tool-examples-2025-10-29',
  'effort-2025-11-24',
]);

/** A Messages request as Bedrock's InvokeModel takes it. */
export interface BedrockRequest {
  /** `/model/{modelId}/invoke` or `/model/{modelId}/invoke-with-response-stream`, the id URL-encoded. */
  readonly path: string;
  readonly stream: boolean;
  readonly body: Buffer;
}

/** The betas a client asked for (header, comma-separated, or the body's `anthropic_beta`) that Bedrock knows. */
function betasOf(header: string | readonly string[] | undefined, inBody: unknown): string[] {
  const asked = [
    ...(Array.isArray(header) ? header : [header ?? '']).flatMap((h: string) => h.split(',')),
    ...(Array.isArray(inBody) ? inBody.filter((b): b is string => typeof b === 'string') : []),
  ].map((b) => b.trim());
  return [...new Set(asked.filter((b) => BEDROCK_BETAS.has(b)))];
}

/**
 * Rewrites an Anthropic Messages body for Bedrock: the model goes into the path (mapped through
 * the instance's `models`), `stream` chooses the endpoint, and neither may stay in the body.
 * Undefined when the body names no model (the client gets a 400).
 */
export function bedrockRequest(
  body: JsonObject,
  betaHeader: string | readonly string[] | undefined,
  models: Readonly<Record<string, string>>,
): BedrockRequest | undefined {
  const { model, stream, anthropic_beta: bodyBetas, ...rest } = body;
  if (typeof model !== 'string' || model === '') return undefined;
  const id = mappedModel(models, model);
  const betas = betasOf(betaHeader, bodyBetas);
  const out: JsonObject = { anthropic_version: BEDROCK_VERSION, ...rest };
  if (betas.length > 0) out.anthropic_beta = betas;
  const streamed = stream === true;
  return {
    path: `/model/${encodeModelId(id)}/${streamed ? 'invoke-with-response-stream' : 'invoke'}`,
    stream: streamed,
    body: Buffer.from(JSON.stringify(out)),
  };
}

/** The id as one path segment, as the AWS SDK encodes it (`:` and `/` of an ARN escaped). */
export function encodeModelId(id: string): string {
  return encodeURIComponent(id).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The Bedrock id a client's model name maps to, or the name itself. Own entries only: a member's
 * `constructor` or `__proto__` is no entry of the map (read through, it was a function and a 500).
 */
export function mappedModel(models: Readonly<Record<string, string>>, model: string): string {
  return Object.hasOwn(models, model) ? models[model]! : model;
}

/** The instance's `models` field: client model name → Bedrock model id or inference-profile ARN. */
export function modelsOf(options: JsonObject): Readonly<Record<string, string>> {
  return isObject(options.models) ? (options.models as Record<string, string>) : {};
}

/**
 * The foundation model an id names: CountTokens takes only those, and refuses inference profiles
 * (`us.anthropic.…`, or their ARNs) with a ValidationException.
 */
export function foundationModelId(id: string): string {
  const slash = id.lastIndexOf('/');
  const last = id.startsWith('arn:') && slash !== -1 ? id.slice(slash + 1) : id;
  return last.replace(REGIONAL, '');
}

/** Max tokens CountTokens is told when the client's count_tokens body has none: InvokeModel's schema requires it, the count ignores it. */
const COUNT_MAX_TOKENS = 1024;

/**
 * Anthropic's count_tokens body as Bedrock's CountTokens takes it:
 * `POST /model/{foundationModelId}/count-tokens` with `{"input": {"invokeModel": {"body": "<base64
 * of the InvokeModel body>"}}}`; Bedrock answers `{"inputTokens": n}`.
 */
export function countTokensRequest(
  body: JsonObject,
  betaHeader: string | readonly string[] | undefined,
  models: Readonly<Record<string, string>>,
): BedrockRequest | undefined {
  const { model, stream: _stream, anthropic_beta: bodyBetas, ...rest } = body;
  if (typeof model !== 'string' || model === '') return undefined;
  const invoke: JsonObject = { anthropic_version: BEDROCK_VERSION, max_tokens: COUNT_MAX_TOKENS, ...rest };
  const betas = betasOf(betaHeader, bodyBetas);
  if (betas.length > 0) invoke.anthropic_beta = betas;
  const wrapped = {
    input: { invokeModel: { body: Buffer.from(JSON.stringify(invoke)).toString('base64') } },
  };
  return {
    path: `/model/${encodeModelId(foundationModelId(mappedModel(models, model)))}/count-tokens`,
    stream: false,
    body: Buffer.from(JSON.stringify(wrapped)),
  };
}
