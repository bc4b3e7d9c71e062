import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import { Authenticator } from './auth';
import { AuthCache } from './auth-cache';
import { AuthThrottle } from './auth-throttle';
import { identityRoutes } from './identity-routes';
import { IdentityService } from './identity-service';
import { checkKeyHashSecret } from './key-hash-check';
import { KeyHasher } from './keys';

/** How long a key the store confirmed stays usable while the store is unreachable (open mode only). */
const OUTAGE_KEY_MEMORY_MS = 15 * 60_000;

export interface IdentityCapability extends Capability {
  hasher: KeyHasher;
  identity: IdentityService;
  auth: Authenticator;
}

/** Users, teams and bridge keys: the key hasher, the authenticator every route uses, the users/keys API. */
export async function identityCapability(core: Core): Promise<IdentityCapability> {
  const { config, store, metrics, clock, life } = core;
  const hasher = await KeyHasher.load(config.dataDir, config.keyHashSecret);
  // Replicas on one database must hash keys alike: a different secret refuses to start.
  await checkKeyHashSecret(store, hasher);
  const identity = new IdentityService(store, hasher, datesOf(clock), config.limits.keysPerUser);
  // Keys and users per replica, dropped as the store announces changes (from any replica).
  const cache = new AuthCache(() => clock.now());
  const auth = new Authenticator(
    store,
    hasher,
    new AuthThrottle(config.authFailuresPerMinute, () => clock.now()),
    datesOf(clock),
    () => metrics.authFailures.inc(),
    // AIBRIDGE_AUDIT_FAILURE=open serves through a database outage, for keys confirmed recently.
    config.auditFailure === 'open' ? OUTAGE_KEY_MEMORY_MS : undefined,
    cache,
  );
  const unwatch = store.watch((change) => {
    cache.apply(change);
    auth.apply(change);
  });
  life.onClose('auth cache', unwatch);
  // Name and family only: a member learns which routes exist, never where they lead or with what key.
  const providers = Object.values(config.upstreams).map(({ name, type }) => ({ name, type }));
  return { hasher, identity, auth, routes: identityRoutes(identity, store, providers) };
}
