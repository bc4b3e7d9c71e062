import { isObject } from '../common';
import type { VertexLocation } from '../google-cloud';
import type { JsonObject } from '../types';

/** The methods an instance sends upstream, as Vertex spells them. */
const METHODS = ['generateContent', 'streamGenerateContent', 'countTokens'] as const;
export type VertexMethod = (typeof METHODS)[number];

/**
 * Every client form the family serves (the routes admit only these): the Gemini API's
 * `/v1beta/models/{m}:…`, Vertex's `/v1beta1/projects/{p}/locations/{l}/publishers/google/models/{m}:…`
 * and Vertex express mode's `/v1beta1/publishers/google/models/{m}:…`.
 */
const CLIENT_PATH =
  /^\/(v1|v1beta|v1beta1)\/(?:projects\/[^/]+\/locations\/[^/]+\/)?(?:publishers\/google\/)?models\/([^/:]+):([A-Za-z]+)$/i;

/** A client's request as Vertex takes it: the path (with the client's query) below the endpoint, the method. */
export interface VertexTarget {
  readonly path: string;
  readonly method: VertexMethod;
}

/**
 * Where a client's request goes on Vertex: always the instance's own project and region (a
 * Vertex-form client's are ignored), the model and method from the client's path, its query
 * (`alt=sse`) kept. A beta API version (`v1beta`, `v1beta1`) goes to Vertex's `v1beta1`, `v1` to
 * `v1`: the Gemini API's beta fields are in Vertex's beta, and Google's SDKs talk `v1beta1` to Vertex.
 * Undefined: not a path the family serves.
 */
export function vertexTarget(target: string, at: VertexLocation): VertexTarget | undefined {
  const q = target.indexOf('?');
  const [path, query] = q === -1 ? [target, ''] : [target.slice(0, q), target.slice(q)];
  const m = CLIENT_PATH.exec(path);
  const method = METHODS.find((name) => name.toLowerCase() === m?.[3]?.toLowerCase());
  if (!m || !method) return undefined;
  const version = m[1]!.toLowerCase() === 'v1' ? 'v1' : 'v1beta1';
  const location = `projects/${encodeURIComponent(at.project)}/locations/${encodeURIComponent(at.region)}`;
  return {
    path: `/${version}/${location}/publishers/google/models/${m[2]}:${method}${query}`,
    method,
  };
}

/** `contents` with `"role": "user"` on every item that has none; undefined when none lacked it. */
function withRoles(contents: unknown): unknown[] | undefined {
  if (!Array.isArray(contents)) return undefined;
  let added = false;
  const out = (contents as unknown[]).map((c) => {
    if (!isObject(c) || c.role !== undefined) return c;
    added = true;
    return { role: 'user', ...c };
  });
  return added ? out : undefined;
}

/** The fields of a Gemini API `countTokens` body's `generateContentRequest` that Vertex takes at the top. */
const COUNTED = ['contents', 'systemInstruction', 'tools', 'toolConfig', 'generationConfig'] as const;

/**
 * A body as Vertex takes it, or undefined when it goes as the client sent it (so the bytes are
 * untouched). The Gemini API takes a content without a `role` as the user's; Vertex refuses it
 * ("Please use a valid role: user, model"), so the role is added. The Gemini API's `countTokens`
 * may wrap the request in `generateContentRequest` (with a `models/…` name Vertex would refuse);
 * Vertex takes its fields at the top.
 */
export function vertexBody(body: JsonObject, method: VertexMethod): JsonObject | undefined {
  let out = body;
  if (method === 'countTokens' && isObject(body.generateContentRequest)) {
    const { generateContentRequest: inner, ...rest } = body;
    out = { ...rest };
    for (const f of COUNTED) if ((inner as JsonObject)[f] !== undefined) out[f] = (inner as JsonObject)[f];
  }
  const contents = withRoles(out.contents);
  if (contents) out = { ...out, contents };
  return out === body ? undefined : out;
}
