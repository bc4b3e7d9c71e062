import { calcPrice, findProvider } from '@pydantic/genai-prices';
import type { ModelAlias } from '../../shared/aliases';
import { emptyUsage } from '../../shared/usage';
import { isBridgeError } from '../errors';
import type { UpstreamConfig } from '../provider-config';
import type { ListedModel } from '../providers/model-listing';
import { familyOf } from '../providers/registry';
import type { ModelPolicies } from '../spend/model-policy';
import type { PriceBook } from '../spend/prices';

/** A model an instance serves, before any team's policy. */
interface KnownModel {
  readonly id: string;
  readonly name: string;
  /** The model a request for it is judged as, when not its id (a Bedrock `models` map's name). */
  readonly servedAs?: string;
}

/** Price-data entries that are not a model id a client sends (`ft:` prefixes, `gpt-4o:extended`, `…-` stems). */
function isClientModelId(id: string): boolean {
  return !id.includes(':') && !id.endsWith('-') && !id.includes('.ft-');
}

/** The price data's models of one provider id, as clients name them. */
function priceDataModels(priceId: string): KnownModel[] {
  let provider: ReturnType<typeof findProvider>;
  try {
    provider = findProvider({ providerId: priceId });
  } catch {
    // A price id the bundled data does not know: the instance lists only its own prices.
    return [];
  }
  return (provider?.models ?? [])
    .filter((m) => isClientModelId(m.id))
    .map((m) => ({ id: m.id, name: m.name ?? m.id }));
}

/** The price data's name of the model `model` matches (a dated name matches its model), if any. */
function priceDataName(priceId: string, model: string): string | undefined {
  try {
    return calcPrice({ input_tokens: 1, output_tokens: 1 }, model, { providerId: priceId })?.model.name;
  } catch {
    return undefined;
  }
}

/** One token in and out: enough to ask the price book whether it can price a model at all. */
const PROBE = { ...emptyUsage(), input: 1, output: 1 };

/**
 * The models a caller may use, per instance (docs/routing.md#model-discovery): the models the
 * instance is known to serve — its family's models in the bundled price data, its own `prices`
 * table, admin price overrides naming it — with the caller's team's allow and deny lists
 * applied, and the aliases the caller can use whose real model the instance serves and the
 * policy allows. The upstream's own list is not asked: a listing costs no upstream call and no
 * upstream key, and cannot list a model the bridge could not price.
 */
export class ModelCatalog {
  private readonly known = new Map<string, readonly KnownModel[]>();
  private readonly ids = new Set<string>();
  /** Per instance that lists only its own names: the price data's names it does not serve as sent. */
  private readonly unserved = new Map<string, ReadonlySet<string>>();

  constructor(
    private readonly instances: Readonly<Record<string, UpstreamConfig>>,
    private readonly prices: Pick<PriceBook, 'cost' | 'listOverrides'>,
    private readonly policies: Pick<ModelPolicies, 'check'>,
  ) {
    for (const u of Object.values(instances)) {
      const byId = new Map<string, KnownModel>();
      const own = familyOf(u.type)?.listedModels?.(u);
      const priceData = u.priceId === null ? [] : priceDataModels(u.priceId);
      if (own?.priceData ?? true) for (const m of priceData) byId.set(m.id, m);
      else this.unserved.set(u.name, new Set(priceData.map((m) => m.id)));
      for (const n of own?.names ?? []) {
        byId.set(n.id, {
          id: n.id,
          name: (u.priceId !== null && priceDataName(u.priceId, n.servedAs)) || n.id,
          ...(n.servedAs === n.id ? {} : { servedAs: n.servedAs }),
        });
      }
      if (u.prices && u.prices !== 'free')
        for (const id of Object.keys(u.prices)) byId.set(id, { id, name: id });
      this.known.set(u.name, [...byId.values()]);
      for (const id of byId.keys()) this.ids.add(id);
    }
  }

  /** Whether `name` is the id of a model some instance serves (an alias may not take it). */
  isModel(name: string): boolean {
    return this.ids.has(name);
  }

  /** The instance's models before policy: the price data's and its own, then admin overrides naming it. */
  private modelsOf(instance: string): KnownModel[] {
    const u = this.instances[instance];
    const byId = new Map((this.known.get(instance) ?? []).map((m) => [m.id, m]));
    for (const o of this.prices.listOverrides())
      if (o.provider !== null && (o.provider === instance || o.provider === u?.priceId) && !byId.has(o.model))
        byId.set(o.model, { id: o.model, name: o.model });
    return [...byId.values()];
  }

  private allowed(team: string | null, model: string): boolean {
    try {
      this.policies.check(team, model);
      return true;
    } catch (err) {
      // A refusal is the answer (the model is not listed); anything else is a real failure.
      if (isBridgeError(err) && err.code === 'model_denied') return false;
      throw err;
    }
  }

  /**
   * What a member of `team` may use on `instance`: their aliases first (by name), then the
   * instance's models (by id). `aliases` are the ones visible to the caller.
   */
  forUser(instance: string, team: string | null, aliases: readonly ModelAlias[]): ListedModel[] {
    const u = this.instances[instance];
    const ownedBy = u?.type ?? instance;
    const models = this.modelsOf(instance);
    const served = new Set(models.map((m) => m.id));
    const out: ListedModel[] = [];
    for (const a of aliases) {
      // A price-data name an instance does not serve as sent is priced there, but not served.
      const servedHere =
        served.has(a.model) ||
        (!this.unserved.get(instance)?.has(a.model) && this.prices.cost(instance, a.model, PROBE) !== null);
      if (servedHere && this.allowed(team, a.model))
        out.push({ id: a.alias, displayName: `${a.alias} → ${a.model}`, ownedBy: 'aibridge' });
    }
    const listed = new Set(out.map((m) => m.id));
    for (const m of models.sort((a, b) => a.id.localeCompare(b.id)))
      if (!listed.has(m.id) && this.allowed(team, m.servedAs ?? m.id))
        out.push({ id: m.id, displayName: m.name, ownedBy });
    return out;
  }
}
