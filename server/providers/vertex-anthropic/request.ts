import type { VertexLocation } from '../google-cloud';
import type { JsonObject } from '../types';
import { vertexModelId } from './models';

/** The `anthropic_version` Claude on Vertex takes in the body (in place of the header). */
export const VERTEX_VERSION = 'vertex-2023-10-16';

/**
 * The `anthropic-beta` values passed to Vertex. Vertex refuses a request naming one it does not
 * serve ("Unexpected value(s) … for the `anthropic-beta` header", a 400), and Claude Code sends
 * first-party-only ones (`claude-code-20250219`, `oauth-2025-04-20`, `prompt-caching-scope-…`,
 * `effort-…`, `web-search-…`); those are dropped rather than refused.
 */
export const VERTEX_BETAS: ReadonlySet<string> = new Set([
  'computer-use-2024-10-22',
  'computer-use-2025-01-24',
  'computer-use-2025-11-24',
  'token-efficient-tools-2025-02-19',
  'interleaved-thinking-2025-05-14',
  'output-128k-2025-02-19',
  'context-1m-2025-08-07',
  'context-management-2025-06-27',
  'fine-grained-tool-streaming-2025-05-14',
]);

/** A request as Vertex takes it: the path below the endpoint and the body. */
export interface VertexRequest {
  readonly path: string;
  readonly body: Buffer;
}

function modelsPath(at: VertexLocation): string {
  return `/v1/projects/${encodeURIComponent(at.project)}/locations/${encodeURIComponent(at.region)}/publishers/anthropic/models/`;
}

/** A model id as one path segment; `@` stays as Vertex spells it. */
function segment(id: string): string {
  return encodeURIComponent(id).replace(/%40/g, '@');
}

/**
 * A Messages body for `:rawPredict` or, when it streams, `:streamRawPredict`: the model moves
 * into the path, `anthropic_version` joins the body and `stream` stays in it (Vertex streams only
 * when both say so). Undefined when the body names no model.
 */
export function messagesRequest(
  body: JsonObject,
  models: Readonly<Record<string, string>>,
  at: VertexLocation,
): VertexRequest | undefined {
  const { model, ...rest } = body;
  if (typeof model !== 'string' || model === '') return undefined;
  const method = rest.stream === true ? 'streamRawPredict' : 'rawPredict';
  const out: JsonObject = { anthropic_version: VERTEX_VERSION, ...rest };
  return {
    path: `${modelsPath(at)}${segment(vertexModelId(model, models))}:${method}`,
    body: Buffer.from(JSON.stringify(out)),
  };
}

/**
 * A count_tokens body for Vertex's `count-tokens:rawPredict`: the model stays in the body (as a
 * Vertex id) and `anthropic_version` joins it, as Anthropic's Vertex SDK sends it.
 */
export function countTokensRequest(
  body: JsonObject,
  models: Readonly<Record<string, string>>,
  at: VertexLocation,
): VertexRequest | undefined {
  const { model } = body;
  if (typeof model !== 'string' || model === '') return undefined;
  const out: JsonObject = { anthropic_version: VERTEX_VERSION, ...body, model: vertexModelId(model, models) };
  return { path: `${modelsPath(at)}count-tokens:rawPredict`, body: Buffer.from(JSON.stringify(out)) };
}

/** The client's betas (comma-separated, possibly repeated headers) that Vertex serves; undefined: none. */
export function vertexBetas(header: string | readonly string[] | undefined): string | undefined {
  const asked = (Array.isArray(header) ? header : [header ?? '']).flatMap((h: string) => h.split(','));
  const kept = [...new Set(asked.map((b) => b.trim()).filter((b) => VERTEX_BETAS.has(b)))];
  return kept.length > 0 ? kept.join(',') : undefined;
}
