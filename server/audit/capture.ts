import type { CaptureLevel } from '../../shared/interception';
import type { Store } from '../store/types';

interface TeamCapture {
  team: string;
  level: CaptureLevel;
  updatedAt: string;
}

/** The capture level per team, over the deployment's default (AIBRIDGE_AUDIT_CAPTURE). */
export class CapturePolicy {
  private readonly byTeam = new Map<string, TeamCapture>();

  constructor(
    private readonly store: Store,
    readonly defaultLevel: CaptureLevel,
  ) {}

  /** Reads the stored levels, replacing what was loaded (again when another replica changes them). */
  async load(): Promise<void> {
    const teams = await this.store.listDocs<TeamCapture>('team_capture');
    this.byTeam.clear();
    for (const t of teams) this.byTeam.set(t.team, t);
  }

  levelFor(team: string | null): CaptureLevel {
    return (team !== null ? this.byTeam.get(team)?.level : undefined) ?? this.defaultLevel;
  }

  list(): { default: CaptureLevel; teams: TeamCapture[] } {
    return { default: this.defaultLevel, teams: [...this.byTeam.values()] };
  }

  async put(team: string, level: CaptureLevel): Promise<TeamCapture> {
    const t = { team, level, updatedAt: new Date().toISOString() };
    await this.store.putDoc('team_capture', team, t);
    this.byTeam.set(team, t);
    return t;
  }

  async delete(team: string): Promise<boolean> {
    this.byTeam.delete(team);
    return this.store.deleteDoc('team_capture', team);
  }
}
