import type { ModelAlias } from '../../shared/aliases';
import { BridgeError } from '../errors';
import { ProvidersFileError } from '../provider-config';
import type { Store } from '../store/types';

/** What an alias may be called: the characters model ids use, at most 64. */
export const ALIAS_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
/** What an alias may point to: a model id as providers spell them (Bedrock's `us.anthropic…:0`, Vertex's `@`). */
const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,199}$/;
/** The providers file's `aliases` holds per-team tables under this key, so no alias may be called so. */
const TEAMS_KEY = 'teams';

/** The aliases of the providers file: everyone's, and each team's own. */
export interface AliasTable {
  readonly everyone: Readonly<Record<string, string>>;
  readonly teams: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

export const NO_ALIASES: AliasTable = { everyone: {}, teams: {} };

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function table(raw: unknown, where: string): Record<string, string> {
  if (!isPlainObject(raw))
    throw new ProvidersFileError(null, null, `${where}: expected an object of alias to model id`);
  const out: Record<string, string> = {};
  for (const [name, model] of Object.entries(raw)) {
    if (typeof model !== 'string')
      throw new ProvidersFileError(null, null, `${where}.${name}: expected a model id`);
    out[name] = model;
  }
  return out;
}

/**
 * The providers file's top-level `aliases`: `{"fast": "claude-haiku-4-5"}`, and optionally
 * `"teams": {"platform": {"fast": "…"}}`. Only the shape is read here; `ModelAliases` checks each
 * entry (names, chains, shadowing) when the bridge starts, naming `aliases.<name>`.
 */
export function fileAliases(fileJson: unknown): AliasTable {
  if (!isPlainObject(fileJson) || fileJson.aliases === undefined) return NO_ALIASES;
  const raw = fileJson.aliases;
  if (!isPlainObject(raw))
    throw new ProvidersFileError(null, null, 'aliases: expected an object of alias to model id');
  const { [TEAMS_KEY]: teamsRaw, ...rest } = raw;
  const teams: Record<string, Record<string, string>> = {};
  if (teamsRaw !== undefined) {
    if (!isPlainObject(teamsRaw))
      throw new ProvidersFileError(null, null, 'aliases.teams: expected an object of team to aliases');
    for (const [team, t] of Object.entries(teamsRaw)) teams[team] = table(t, `aliases.teams.${team}`);
  }
  return { everyone: table(rest, 'aliases'), teams };
}

/** Where an entry lives, for messages: `aliases.fast`, `aliases.teams.platform.fast`. */
function where(alias: string, team: string | null): string {
  return team === null ? `aliases.${alias}` : `aliases.teams.${team}.${alias}`;
}

function docId(alias: string, team: string | null): string {
  // Alias names hold no `/`: the team is what comes before the last one.
  return team === null ? alias : `${team}/${alias}`;
}

function scopeKey(team: string | null): string {
  return team === null ? '' : `t:${team}`;
}

/**
 * The model aliases in force: the providers file's are the defaults, the ones an admin stores
 * (`model_alias` documents, reloaded when another replica changes them) override them name by
 * name. A team's alias wins over everyone's of the same name for the team's members. An alias
 * never points to another alias, so resolving is one look-up and can never loop; an alias never
 * takes the name of a model the bridge knows, so a real model is never silently redirected (that
 * is what routes are for).
 */
export class ModelAliases {
  /** By scope (everyone, or one team), then name. */
  private effective = new Map<string, Map<string, ModelAlias>>();
  private readonly fromFile: ModelAlias[];

  /**
   * `isModel`: whether a name is a model id the bridge knows (price data, instance prices); an
   * alias may not take such a name. Throws ProvidersFileError naming the entry when the file's
   * aliases break a rule.
   */
  constructor(
    file: AliasTable,
    private readonly store: Store,
    private readonly isModel: (name: string) => boolean,
    private readonly now: () => Date,
    /** Whether a name is a route's (routes.ts): a request for it would reach the alias, never the route. */
    private readonly isRouted: (name: string) => boolean = () => false,
  ) {
    this.fromFile = [
      ...Object.entries(file.everyone).map(([alias, model]) => ({
        alias,
        model,
        team: null,
        source: 'file' as const,
      })),
      ...Object.entries(file.teams).flatMap(([team, t]) =>
        Object.entries(t).map(([alias, model]) => ({ alias, model, team, source: 'file' as const })),
      ),
    ];
    const problem = this.firstProblem(this.fromFile);
    if (problem)
      throw new ProvidersFileError(null, null, `${where(problem.alias, problem.team)}: ${problem.why}`);
    this.index([]);
  }

  /** Reads the stored aliases (again when another replica changes them). */
  async load(): Promise<void> {
    this.index(await this.store.listDocs<ModelAlias>('model_alias'));
  }

  private index(stored: readonly ModelAlias[]): void {
    const next = new Map<string, Map<string, ModelAlias>>();
    for (const a of [...this.fromFile, ...stored]) {
      const key = scopeKey(a.team);
      const scope = next.get(key) ?? new Map<string, ModelAlias>();
      next.set(key, scope);
      scope.set(a.alias, a);
    }
    this.effective = next;
  }

  /** The real model an alias stands for, for a member of `team`; undefined: not an alias. */
  resolve(team: string | null, name: string): string | undefined {
    if (team !== null) {
      const own = this.effective.get(scopeKey(team))?.get(name);
      if (own) return own.model;
    }
    return this.effective.get('')?.get(name)?.model;
  }

  /** Whether any alias in force, everyone's or a team's, has this name. */
  has(name: string): boolean {
    for (const scope of this.effective.values()) if (scope.has(name)) return true;
    return false;
  }

  /** Every alias in force, everyone's first, by name. */
  list(): ModelAlias[] {
    return [...this.effective.values()]
      .flatMap((s) => [...s.values()])
      .sort((a, b) => (a.team ?? '').localeCompare(b.team ?? '') || a.alias.localeCompare(b.alias));
  }

  /** The aliases a member of `team` can use (the team's own winning over everyone's), by name. */
  visibleTo(team: string | null): ModelAlias[] {
    const out = new Map<string, ModelAlias>();
    for (const a of this.effective.get('')?.values() ?? []) out.set(a.alias, a);
    if (team !== null)
      for (const a of this.effective.get(scopeKey(team))?.values() ?? []) out.set(a.alias, a);
    return [...out.values()].sort((a, b) => a.alias.localeCompare(b.alias));
  }

  /** Sets an alias (for everyone, or a team); a 400 naming the entry when it breaks a rule. */
  async put(alias: string, model: string, team: string | null): Promise<ModelAlias> {
    const entry: ModelAlias = { alias, model, team, source: 'admin', updatedAt: this.now().toISOString() };
    const others = this.list().filter((a) => !(a.alias === alias && a.team === team));
    const problem = this.firstProblem([entry], others);
    if (problem)
      throw new BridgeError('invalid_request', `${where(problem.alias, problem.team)}: ${problem.why}`);
    await this.store.putDoc('model_alias', docId(alias, team), entry);
    await this.load();
    return entry;
  }

  /** Removes an admin's alias; the providers file's of the same name (if any) is in force again. */
  async delete(alias: string, team: string | null): Promise<ModelAlias> {
    const stored = await this.store.getDoc<ModelAlias>('model_alias', docId(alias, team));
    if (!stored) {
      const inFile = this.fromFile.some((a) => a.alias === alias && a.team === team);
      throw new BridgeError(
        'alias_not_found',
        inFile
          ? `${where(alias, team)} comes from the providers file; change it there (an admin's alias of the same name overrides it).`
          : `No stored alias ${where(alias, team)}.`,
      );
    }
    await this.store.deleteDoc('model_alias', docId(alias, team));
    await this.load();
    return stored;
  }

  /**
   * The first entry of `entries` that breaks a rule, given the aliases already in force
   * (`others`): names and model ids well formed, no alias named after a known model, and no
   * alias pointing to a name that is an alias, or named after what an alias points to.
   */
  private firstProblem(
    entries: readonly ModelAlias[],
    others: readonly ModelAlias[] = entries,
  ): { alias: string; team: string | null; why: string } | undefined {
    const all = entries === others ? entries : [...others, ...entries];
    // Scopes that can see each other: everyone's and a team's, or the same team's.
    const related = (a: ModelAlias, b: ModelAlias): boolean =>
      a.team === null || b.team === null || a.team === b.team;
    for (const e of entries) {
      const fail = (why: string) => ({ alias: e.alias, team: e.team, why });
      if (!ALIAS_NAME.test(e.alias) || e.alias === TEAMS_KEY)
        return fail(`the name must match ${ALIAS_NAME.source} and not be "${TEAMS_KEY}"`);
      if (!MODEL_ID.test(e.model)) return fail(`"${e.model}" is not a model id`);
      if (this.isModel(e.alias))
        return fail(
          `"${e.alias}" is a model's own id; an alias must not shadow a model (use a route to redirect one)`,
        );
      if (this.isRouted(e.alias))
        return fail(
          `"${e.alias}" is a route's name; a request for it would be sent to the alias's model, never through the route (name one or the other differently)`,
        );
      const chained = all.find((o) => o !== e && related(o, e) && o.alias === e.model);
      if (chained || e.model === e.alias)
        return fail(`"${e.model}" is itself an alias; an alias must point to a real model (no chains)`);
      const target = all.find((o) => o !== e && related(o, e) && o.model === e.alias);
      if (target)
        return fail(
          `${where(target.alias, target.team)} points to "${e.alias}"; an alias must not be named after another alias's model (no chains)`,
        );
    }
    return undefined;
  }
}
