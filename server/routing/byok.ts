import type { IncomingHttpHeaders } from 'node:http';
import { BridgeError } from '../errors';
import { BRIDGE_KEY_HEADER } from '../identity/auth';
import { looksLikeKey } from '../identity/keys';
import type { Store } from '../store/types';
import type { CredentialSource } from './credentials';

/** The headers a provider's clients send their credential in (docs/providers.md). */
const PROVIDER_AUTH_HEADERS = ['x-api-key', 'authorization', 'api-key', 'x-goog-api-key'] as const;

/** A team's stored choice, which wins over the providers file's `byok.teams`. */
export interface TeamByok {
  team: string;
  allowed: boolean;
  updatedAt: string;
}

/** What `GET /api/v1/teams/:team/byok` answers: whether the team may, and what decided it. */
export interface TeamByokView {
  team: string;
  allowed: boolean;
  /** `admin`: set through the API; `file`: the providers file's `byok.teams`; `default`: neither (not allowed). */
  source: 'admin' | 'file' | 'default';
  updatedAt: string | null;
}

function headerText(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s.trim() === '' ? undefined : s.trim();
}

/** The token an auth header holds (`Bearer` stripped), to compare with the bridge key. */
function tokenOf(name: string, value: string): string {
  if (name !== 'authorization') return value;
  return /^Bearer\s+(\S+)\s*$/i.exec(value)?.[1] ?? value;
}

/**
 * The user's own provider credential, as the headers it came in: present only when the bridge key
 * travels in `X-AIBridge-Key`, so the provider's auth headers are free to carry the user's. A
 * header that holds a bridge key (the same one, or anything shaped like one) is never taken for
 * the user's: a bridge key must not reach a provider.
 */
export function ownCredential(headers: IncomingHttpHeaders): Record<string, string> | undefined {
  const bridgeKey = headerText(headers[BRIDGE_KEY_HEADER]);
  if (bridgeKey === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const name of PROVIDER_AUTH_HEADERS) {
    const value = headerText(headers[name]);
    if (value === undefined) continue;
    const token = tokenOf(name, value);
    if (token === bridgeKey || looksLikeKey(token)) continue;
    out[name] = value;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** One request's credential source: the user's own headers, for every attempt it makes. */
export function ownCredentialSource(headers: Record<string, string>): CredentialSource {
  const lease = { keyName: null, headers, report: () => undefined };
  return { acquire: async () => lease };
}

/**
 * Which teams may pass their members' own provider credentials through (docs/routing.md): a
 * team's stored choice (`PUT /api/v1/teams/:team/byok`) wins, else the providers file's
 * `"byok": {"teams": [...]}` (`"*"`: every team), else not allowed.
 */
export class ByokPolicy {
  private readonly byTeam = new Map<string, TeamByok>();
  private readonly fileTeams: ReadonlySet<string>;

  constructor(
    private readonly store: Store,
    fileTeams: readonly string[],
    private readonly now: () => Date = () => new Date(),
  ) {
    this.fileTeams = new Set(fileTeams);
  }

  /** Reads the stored choices, replacing what was loaded (again when another replica changes them). */
  async load(): Promise<void> {
    const teams = await this.store.listDocs<TeamByok>('team_byok');
    this.byTeam.clear();
    for (const t of teams) this.byTeam.set(t.team, t);
  }

  /** Whether a member of `team` (null: no team) may send their own credential. */
  allows(team: string | null): boolean {
    return this.view(team).allowed;
  }

  view(team: string | null): TeamByokView {
    const stored = team === null ? undefined : this.byTeam.get(team);
    if (stored) return { ...stored, source: 'admin' };
    const inFile = this.fileTeams.has('*') || (team !== null && this.fileTeams.has(team));
    return { team: team ?? '', allowed: inFile, source: inFile ? 'file' : 'default', updatedAt: null };
  }

  async put(team: string, allowed: boolean): Promise<TeamByokView> {
    const t: TeamByok = { team, allowed, updatedAt: this.now().toISOString() };
    await this.store.putDoc('team_byok', team, t);
    this.byTeam.set(team, t);
    return this.view(team);
  }

  /** Refuses a request with its own credential that the caller's team may not send (`byok_not_allowed`). */
  check(team: string | null): void {
    if (this.allows(team)) return;
    throw new BridgeError(
      'byok_not_allowed',
      `The request carries its own provider credential (beside X-AIBridge-Key), which ${
        team === null ? 'users without a team' : `team "${team}"`
      } may not use; send the bridge key alone, or ask an admin to allow it (PUT /api/v1/teams/:team/byok).`,
    );
  }
}
