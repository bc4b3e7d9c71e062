import type { Role } from '../../shared/identity';

/**
 * How an identity provider's groups become a bridge team and role, the same for OIDC sign-in and
 * SCIM provisioning (docs/sso.md): the first group with an entry in `groupTeams` names the team
 * (else the first group itself, when `firstGroupIsTeam`); membership of `adminGroup` makes an admin.
 */
export interface GroupMapping {
  /** AIBRIDGE_GROUP_TEAMS: group name → team. */
  readonly groupTeams: Readonly<Record<string, string>>;
  /** AIBRIDGE_OIDC_ADMIN_GROUP: members of this group are admins; undefined: nobody is made admin by group. */
  readonly adminGroup: string | undefined;
  /** Without a matching `groupTeams` entry, the first group is the team. */
  readonly firstGroupIsTeam: boolean;
}

export function teamAndRole(groups: readonly string[], m: GroupMapping): { team: string | null; role: Role } {
  const mapped = groups.find((g) => Object.hasOwn(m.groupTeams, g));
  const team = mapped !== undefined ? m.groupTeams[mapped]! : m.firstGroupIsTeam ? (groups[0] ?? null) : null;
  const role: Role = m.adminGroup !== undefined && groups.includes(m.adminGroup) ? 'admin' : 'member';
  return { team, role };
}
