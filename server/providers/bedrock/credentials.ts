import type { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { commonJs } from '../../core/commonjs';

/** What the SDK's chain returns: a memoized provider of credentials. */
type AwsCredentialIdentityProvider = ReturnType<typeof fromNodeProviderChain>;

/**
 * The AWS SDK's default credential chain (environment, shared config and SSO profiles, web
 * identity / IRSA, container and instance metadata, AssumeRole with an external id from the
 * profile). The SDK memoizes the credentials and refreshes temporary ones before they expire.
 * Created on first use, so a bridge whose machine has no credentials still starts (and answers 503);
 * the chain's code (about 1.5 MB of heap) is loaded then too.
 */
export function awsCredentials(): AwsCredentialIdentityProvider {
  let chain: AwsCredentialIdentityProvider | undefined;
  return async (options) => {
    chain ??= (await commonJs(import('@aws-sdk/credential-providers'))).fromNodeProviderChain();
    return chain(options);
  };
}
