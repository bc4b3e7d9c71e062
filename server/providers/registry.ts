import { anthropicProvider } from './anthropic/provider';
import { openaiProvider } from './openai/provider';
import type { ProviderAdapter } from './types';

/** Every provider the bridge serves; each brings its own prefix, wire APIs and error shape. */
export const PROVIDERS: readonly ProviderAdapter[] = [anthropicProvider, openaiProvider];

/** The provider whose route family (`/anthropic`, `/openai`) a path is in, for errors in its shape. */
export function providerForPath(url: string): ProviderAdapter | undefined {
  const first = url.split(/[/?]/)[1];
  return PROVIDERS.find((p) => p.prefix.split('/')[1] === first);
}
