import { DefaultAzureCredential } from '@azure/identity';

/** The scope Azure OpenAI accepts Entra ID tokens for. */
export const COGNITIVE_SCOPE = 'https://cognitiveservices.azure.com/.default';

/**
 * Bearer tokens from Entra ID through the SDK's default chain (environment, workload identity,
 * managed identity, Azure CLI); the SDK caches and refreshes them before expiry. Created on first
 * use, so a bridge with Entra instances but no credential still starts (and answers 503).
 */
export function entraTokens(): () => Promise<string> {
  let credential: DefaultAzureCredential | undefined;
  return async () => {
    credential ??= new DefaultAzureCredential();
    const token = await credential.getToken(COGNITIVE_SCOPE);
    return token.token;
  };
}
