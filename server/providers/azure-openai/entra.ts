import type { DefaultAzureCredential } from '@azure/identity';
import { commonJs } from '../../core/commonjs';

/** The scope Azure OpenAI accepts Entra ID tokens for. */
export const COGNITIVE_SCOPE = 'https://cognitiveservices.azure.com/.default';

/**
 * Bearer tokens from Entra ID through the SDK's default chain (environment, workload identity,
 * managed identity, Azure CLI); the SDK caches and refreshes them before expiry. Created on first
 * use, so a bridge with Entra instances but no credential still starts (and answers 503); the SDK
 * itself is loaded then too (about 5 MB of heap a bridge without Entra instances never needs).
 */
export function entraTokens(): () => Promise<string> {
  let credential: DefaultAzureCredential | undefined;
  return async () => {
    if (!credential) {
      const { DefaultAzureCredential } = await commonJs(import('@azure/identity'));
      credential ??= new DefaultAzureCredential();
    }
    const token = await credential.getToken(COGNITIVE_SCOPE);
    return token.token;
  };
}
