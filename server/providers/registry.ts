import { anthropicFamily } from './anthropic/family';
import { azureOpenaiFamily } from './azure-openai/family';
import { bedrockFamily } from './bedrock/family';
import type { InstanceSettings, ProviderFamily } from './family';
import { geminiFamily } from './gemini/family';
import { openaiFamily } from './openai/family';
import { openaiCompatibleFamily } from './openai-compatible/family';
import type { ProviderAdapter } from './types';
import { vertexAnthropicFamily } from './vertex-anthropic/family';
import { vertexGeminiFamily } from './vertex-gemini/family';

/** Every provider family the bridge can serve; adding one means one folder and one line here. */
export const FAMILIES: readonly ProviderFamily[] = [
  anthropicFamily,
  openaiFamily,
  openaiCompatibleFamily,
  azureOpenaiFamily,
  geminiFamily,
  bedrockFamily,
  vertexAnthropicFamily,
  vertexGeminiFamily,
];

/** Families registered by tests (a family defined only in its folder is served). */
const extra: ProviderFamily[] = [];

/** Adds a family after start-up code ran; for tests that define one of their own. */
export function registerFamily(f: ProviderFamily): () => void {
  extra.push(f);
  return () => {
    const i = extra.indexOf(f);
    if (i !== -1) extra.splice(i, 1);
  };
}

export function allFamilies(): readonly ProviderFamily[] {
  return [...FAMILIES, ...extra];
}

export function familyOf(type: string): ProviderFamily | undefined {
  return allFamilies().find((f) => f.type === type);
}

/** One configured instance as config holds it: its family's type and settings. */
export interface InstanceConfig extends InstanceSettings {
  readonly type: string;
}

type Instances = Readonly<Record<string, InstanceConfig>>;
const built = new WeakMap<Instances, readonly ProviderAdapter[]>();

/** The adapters of the configured instances (by name), built once per config: token caches live in them. */
export function adaptersOf(instances: Instances): readonly ProviderAdapter[] {
  let list = built.get(instances);
  if (!list) {
    list = Object.values(instances).map((i) => {
      const family = familyOf(i.type);
      if (!family) throw new Error(`no provider family "${i.type}" for instance ${i.name}`);
      return family.create(i);
    });
    built.set(instances, list);
  }
  return list;
}

/** The instance whose route family (`/anthropic`, `/openai`, `/<name>`) a path is in, for errors in its shape. */
export function providerForPath(
  adapters: readonly ProviderAdapter[],
  url: string,
): ProviderAdapter | undefined {
  const first = url.split(/[/?]/)[1];
  return adapters.find((p) => p.prefix.split('/')[1] === first);
}
