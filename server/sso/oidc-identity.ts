import type { User } from '../../shared/identity';
import type { OidcSettings } from '../config';
import { emailKey } from '../core/email';
import { BridgeError, isBridgeError } from '../errors';
import { type GroupMapping, teamAndRole } from '../identity/group-mapping';
import type { IdentityService } from '../identity/identity-service';
import type { UserPatch } from '../store/types';
import type { OidcClaims } from './oidc-client';

/** Who the provider says signed in, after the bridge's own rules (verified email, allow-lists). */
export interface OidcPerson {
  email: string;
  name: string | undefined;
  /**
   * Undefined when the token carries no groups claim: the team is then left as it is, and with an
   * admin group set the role is member (no claim shows the membership). `scim`: SCIM pushes
   * groups, and team and role are its alone.
   */
  groups: string[] | undefined | 'scim';
}

const EMAIL_RE = /^[^\s@]{1,200}@[^\s@]{1,120}$/;

/** Reads and checks the mapped claims; `oidc_email_unverified` or `oidc_not_allowed` when the bridge's rules refuse them. */
export function personFrom(claims: OidcClaims, s: OidcSettings): OidcPerson {
  const rawEmail = claims[s.emailClaim];
  if (typeof rawEmail !== 'string' || !EMAIL_RE.test(rawEmail.trim()))
    throw new BridgeError(
      'oidc_token_invalid',
      `The identity provider sent no email in the "${s.emailClaim}" claim.`,
    );
  const email = emailKey(rawEmail);
  if (email === undefined)
    throw new BridgeError(
      'oidc_token_invalid',
      'The identity provider sent an email with a character that reads as another in lower case (such as the Kelvin sign).',
    );
  // Some providers (Cognito) send the boolean as a string.
  const verified = claims.email_verified === true || claims.email_verified === 'true';
  if (s.requireVerifiedEmail && !verified)
    throw new BridgeError('oidc_email_unverified', `The identity provider has not verified ${email}.`);
  const domain = email.slice(email.lastIndexOf('@') + 1);
  if (s.allowedDomains.length > 0 && !s.allowedDomains.includes(domain))
    throw new BridgeError('oidc_not_allowed', `Accounts of ${domain} may not use this bridge.`);
  const rawGroups = claims[s.groupsClaim];
  const groups = Array.isArray(rawGroups)
    ? rawGroups.filter((g): g is string => typeof g === 'string' && g.length > 0 && g.length <= 256)
    : typeof rawGroups === 'string' && rawGroups.length > 0
      ? [rawGroups]
      : undefined;
  if (s.allowedGroups.length > 0 && !(groups ?? []).some((g) => s.allowedGroups.includes(g)))
    throw new BridgeError('oidc_not_allowed', 'You are in none of the groups allowed to use this bridge.');
  const rawName = claims[s.nameClaim];
  const name =
    typeof rawName === 'string' && rawName.trim() !== '' ? rawName.trim().slice(0, 200) : undefined;
  return { email, name, groups };
}

/**
 * Just-in-time provisioning: the first sign-in creates the user with the name, team and role the
 * claims give; later ones bring them up to date. The role follows the provider only when
 * AIBRIDGE_OIDC_ADMIN_GROUP names a group (else an admin made in the bridge would be demoted by
 * their first sign-in), and never demotes the last admin. `existing` is the user the caller found
 * by `p.email` (the callback looks them up once, to pace them before anything is written).
 */
export async function provision(
  p: OidcPerson,
  mapping: GroupMapping,
  identity: IdentityService,
  existing: User | undefined,
): Promise<{ user: User; created: boolean }> {
  const groups = p.groups === 'scim' ? undefined : p.groups;
  const mapped = groups !== undefined ? teamAndRole(groups, mapping) : undefined;
  // An admin's membership must be shown on every sign-in: Entra ID and Okta leave the claim out
  // for a user in none of the groups they send, which is what a removed admin's token looks like.
  const role =
    p.groups === 'scim' || mapping.adminGroup === undefined ? undefined : (mapped?.role ?? 'member');
  if (!existing) {
    try {
      const user = await identity.createUser({
        email: p.email,
        name: p.name,
        team: mapped?.team ?? undefined,
        role: role ?? 'member',
      });
      return { user, created: true };
    } catch (err) {
      // Two first sign-ins at once (two tabs, two replicas): the other one created the user.
      if (!(isBridgeError(err) && err.code === 'user_exists')) throw err;
    }
  }
  const patch: UserPatch = {};
  if (p.name !== undefined) patch.name = p.name;
  if (mapped !== undefined) patch.team = mapped.team;
  if (role !== undefined) patch.role = role;
  try {
    return { user: await identity.updateUser(p.email, patch), created: false };
  } catch (err) {
    // The provider no longer lists the last admin in the admin group: keep them admin rather than lock everyone out.
    if (!(isBridgeError(err) && err.code === 'last_admin')) throw err;
    const { role: _kept, ...rest } = patch;
    return { user: await identity.updateUser(p.email, rest), created: false };
  }
}
