import { isObject } from './common';
import type { JsonObject, SseEvent } from './wire';

/**
 * Where a wire API names its model, so a model alias (server/routing/aliases.ts) can be swapped
 * for the real model going up and back again coming down: clients that check the `model` of the
 * answer against the one they asked for keep working.
 */
export interface ModelNaming {
  /** The model the request asks for (its body, or its path), or null. */
  requested(body: JsonObject, path: string): string | null;
  /** The request asking for `model` instead: a new body and path, the originals untouched. */
  ask(body: JsonObject, path: string, model: string): { body: JsonObject; path: string };
  /** A JSON answer naming `name` as its model; undefined when the answer names none (unchanged). */
  answer(json: unknown, name: string): unknown;
  /** An SSE event's data naming `name` as its model; `data` itself when the event names none. */
  event(ev: SseEvent, data: string, name: string): string;
}

/** Sets `path`'s string leaf in `obj` to `value` (a copy of each object on the way); undefined when absent. */
function renamed(obj: unknown, path: readonly string[], value: string): JsonObject | undefined {
  if (!isObject(obj)) return undefined;
  const [head, ...rest] = path as [string, ...string[]];
  if (rest.length === 0) return typeof obj[head] === 'string' ? { ...obj, [head]: value } : undefined;
  const inner = renamed(obj[head], rest, value);
  return inner ? { ...obj, [head]: inner } : undefined;
}

/**
 * The usual naming: `model` in the request body and at the top of a JSON answer; each SSE event
 * names it at one of `eventPaths` (`['message', 'model']` for Anthropic's `message_start`).
 */
export function bodyModelNaming(eventPaths: readonly (readonly string[])[]): ModelNaming {
  return {
    requested: (body) => (typeof body.model === 'string' ? body.model : null),
    ask: (body, path, model) => ({ body: { ...body, model }, path }),
    answer: (json, name) => renamed(json, ['model'], name),
    event(_ev, data, name) {
      // Most events (text deltas) name no model: skip parsing them.
      if (!data.includes('"model"')) return data;
      let json: unknown;
      try {
        json = JSON.parse(data);
      } catch {
        // Not JSON: the client gets the event as the provider sent it.
        return data;
      }
      for (const p of eventPaths) {
        const out = renamed(json, p, name);
        if (out) return JSON.stringify(out);
      }
      return data;
    },
  };
}
