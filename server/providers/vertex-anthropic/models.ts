import { isObject } from '../common';
import type { JsonObject } from '../types';

/** Anthropic's dated model names: `claude-sonnet-4-5-20250929`. */
const DATED = /^(claude-[a-z0-9.-]+?)-(\d{8})$/;

/** The instance's `models` field: client model name → Vertex model id. */
export function modelsOf(options: JsonObject): Readonly<Record<string, string>> {
  return isObject(options.models) ? (options.models as Record<string, string>) : {};
}

/**
 * The Vertex model id a client's model name is sent as: the instance's `models` map first; a
 * Vertex id (`claude-sonnet-4-5@20250929`) or an undated alias as it is; Anthropic's dated name
 * `claude-sonnet-4-5-20250929` as Vertex spells it, `claude-sonnet-4-5@20250929`, so Claude Code's
 * default models work without a map.
 */
export function vertexModelId(model: string, models: Readonly<Record<string, string>>): string {
  // Own entries only: a model named `constructor` or `__proto__` is not one of the map's.
  if (Object.hasOwn(models, model)) return models[model]!;
  if (model.includes('@')) return model;
  const m = DATED.exec(model);
  return m ? `${m[1]}@${m[2]}` : model;
}

/**
 * The Anthropic model name a Vertex id is recorded and priced as: `claude-sonnet-4-5@20250929` →
 * `claude-sonnet-4-5-20250929`, `claude-3-5-sonnet-v2@20241022` → `claude-3-5-sonnet-20241022`.
 */
export function priceModelOf(id: string): string {
  const at = id.indexOf('@');
  if (at === -1) return id;
  const name = id.slice(0, at).replace(/-v\d+$/, '');
  const version = id.slice(at + 1);
  return /^\d{8}$/.test(version) ? `${name}-${version}` : name;
}
