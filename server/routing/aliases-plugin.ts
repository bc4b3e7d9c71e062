import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import { ConfigError } from '../config';
import { ProvidersFileError } from '../provider-config';
import type { ListedModel } from '../providers/model-listing';
import type { ModelPolicies } from '../spend/model-policy';
import type { PriceBook } from '../spend/prices';
import { aliasRoutes } from './alias-routes';
import { ModelAliases } from './aliases';
import { ModelCatalog } from './model-catalog';

/** What the provider routes need of aliases and discovery (server/proxy/provider-routes.ts). */
export interface ModelDirectory {
  /** The real model an alias stands for, for a member of `team`; undefined: not an alias. */
  resolve(team: string | null, name: string): string | undefined;
  /** The models (aliases first) a member of `team` may use on `instance`. */
  listFor(instance: string, team: string | null): ListedModel[];
}

export interface AliasCapability extends Capability {
  aliases: ModelAliases;
  models: ModelDirectory;
  /**
   * Where route names are looked up once the routing table is up (it starts after the aliases);
   * until then, the providers file's routes.
   */
  routedBy(isRouted: (name: string) => boolean): void;
}

/**
 * Model aliases and model discovery (docs/routing.md): the aliases in force (the providers file's,
 * under the admin's), their admin API, and the catalog of models each caller may use.
 */
export async function aliasCapability(
  core: Core,
  spend: { prices: PriceBook; policies: ModelPolicies },
): Promise<AliasCapability> {
  const catalog = new ModelCatalog(core.config.upstreams, spend.prices, spend.policies);
  let aliases: ModelAliases;
  let isRouted = (name: string): boolean => Object.hasOwn(core.config.routes, name);
  try {
    aliases = new ModelAliases(
      core.config.aliases,
      core.store,
      (name) => catalog.isModel(name),
      datesOf(core.clock),
      (name) => isRouted(name),
    );
  } catch (err) {
    // The file's aliases are checked against the known models, which only now are known.
    if (err instanceof ProvidersFileError) throw new ConfigError('AIBRIDGE_PROVIDERS_FILE', err.message);
    throw err;
  }
  await aliases.load();
  return {
    aliases,
    models: {
      resolve: (team, name) => aliases.resolve(team, name),
      listFor: (instance, team) => catalog.forUser(instance, team, aliases.visibleTo(team)),
    },
    routedBy(f) {
      isRouted = f;
    },
    routes: aliasRoutes(aliases),
    reload: { model_alias: () => aliases.load() },
  };
}
