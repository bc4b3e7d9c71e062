import { bodyModelNaming, type ModelNaming } from '../model-naming';

/** `…/models/{model}:{method}`: the model segment of a Gemini path. */
const MODEL_SEGMENT = /(\/models\/)([^/:]+)(:[^/]+)$/;

const chunks = bodyModelNaming([['modelVersion']]);

/**
 * Gemini names the model in the path (`/v1beta/models/{model}:generateContent`) and answers with
 * `modelVersion` in each chunk; `streamGenerateContent` without `alt=sse` answers a JSON array of them.
 */
export const geminiModelNaming: ModelNaming = {
  requested(_body, path) {
    const m = MODEL_SEGMENT.exec(path);
    if (!m) return null;
    try {
      return decodeURIComponent(m[2]!);
    } catch {
      // Not a name the bridge could have aliased: the request goes as it came.
      return null;
    }
  },
  ask: (body, path, model) => ({
    body,
    path: path.replace(
      MODEL_SEGMENT,
      (_all, pre: string, _m: string, method: string) => `${pre}${encodeURIComponent(model)}${method}`,
    ),
  }),
  answer(json, name) {
    const one = (c: unknown): unknown => {
      if (typeof c !== 'object' || c === null || !('modelVersion' in c) || typeof c.modelVersion !== 'string')
        return undefined;
      return { ...c, modelVersion: name };
    };
    if (!Array.isArray(json)) return one(json);
    const renamed = json.map((c: unknown) => one(c) ?? c);
    return renamed.some((c, i) => c !== json[i]) ? renamed : undefined;
  },
  event: (ev, data, name) => chunks.event(ev, data, name),
};
