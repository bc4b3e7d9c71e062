import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { calcPrice, type ModelPrice, type Provider } from '@pydantic/genai-prices';
import { type Static, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { ModelPriceOverride, UnknownModel } from '../../shared/spend';
import type { Usage } from '../../shared/usage';
import { ConfigError, type InstanceModelPrice, type InstancePrices } from '../config';
import type { PriceAs } from '../core/facts';
import { BridgeError } from '../errors';

const PriceValueSchema = Type.Union([
  Type.Number({ minimum: 0 }),
  Type.Object(
    {
      base: Type.Number({ minimum: 0 }),
      tiers: Type.Array(
        Type.Object(
          { start: Type.Integer({ minimum: 0 }), price: Type.Number({ minimum: 0 }) },
          { additionalProperties: false },
        ),
      ),
    },
    { additionalProperties: false },
  ),
]);

/** The body of `PUT /api/v1/prices/:model` and each entry of AIBRIDGE_PRICES_FILE: USD per million tokens. */
export const PriceBody = Type.Object(
  {
    provider: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 50 }), Type.Null()])),
    input_mtok: PriceValueSchema,
    output_mtok: PriceValueSchema,
    cache_read_mtok: Type.Optional(PriceValueSchema),
    cache_write_mtok: Type.Optional(PriceValueSchema),
    cache_write_1h_mtok: Type.Optional(PriceValueSchema),
    web_searches_kcount: Type.Optional(Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type PriceBodyT = Static<typeof PriceBody>;

const PricesFile = Type.Record(Type.String({ minLength: 1, maxLength: 200 }), PriceBody);

/** Price keys whose cost is tokens × price, so the generic (slow) calculation can be skipped. */
const SIMPLE_KEYS = new Set([
  'input_mtok',
  'output_mtok',
  'cache_read_mtok',
  'cache_write_mtok',
  'cache_write_1h_mtok',
  'web_searches_kcount',
  'storage_searches_kcount',
]);
/** Prices an override takes from the price data when it does not name them (PriceBook.modelPrice). */
const INHERITED_FEES = ['cache_write_1h_mtok', 'web_searches_kcount', 'storage_searches_kcount'] as const;

/** Prices can change by date or time of day: a resolved price is trusted for a minute. */
const RESOLVE_TTL_MS = 60_000;

interface Resolved {
  at: number;
  prices: ModelPrice;
  simple: boolean;
  provider: Provider;
  /** The output part priced above text (image or audio output), the dearer if both. */
  dearOutput?: DearOutput;
}

/** Parts of `output` some models price apart (Usage.outputImage, Usage.outputAudio). */
export type DearOutput = 'outputImage' | 'outputAudio';

function dearOutputOf(p: ModelPrice): DearOutput | undefined {
  const rate = (v: unknown): number => (typeof v === 'number' ? v : 0);
  const text = rate(p.output_mtok);
  const image = rate((p as Record<string, unknown>).output_image_mtok);
  const audio = rate((p as Record<string, unknown>).output_audio_mtok);
  if (Math.max(image, audio) <= text) return undefined;
  return image >= audio ? 'outputImage' : 'outputAudio';
}

/** Per million tokens; a tiered price applies whole once the request's total input passes its start. */
function unitPrice(v: ModelPrice[string], totalInput: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number') return v;
  let p = v.base;
  for (const t of v.tiers) if (totalInput > t.start) p = t.price;
  return p;
}

/** genai-prices' arithmetic for token prices: cached tokens without their own price cost as input. */
function simpleCost(prices: ModelPrice, u: Usage): number {
  const total = u.input + u.cacheRead + u.cacheWrite;
  const input = unitPrice(prices.input_mtok, total) ?? 0;
  const read = unitPrice(prices.cache_read_mtok, total) ?? input;
  const write = unitPrice(prices.cache_write_mtok, total) ?? input;
  const output = unitPrice(prices.output_mtok, total) ?? 0;
  // The one-hour writes are part of `cacheWrite`, at their own price where there is one.
  const write1h = unitPrice(prices.cache_write_1h_mtok, total) ?? write;
  const searches = unitPrice(prices.web_searches_kcount, total) ?? 0;
  const fileSearches = unitPrice(prices.storage_searches_kcount, total) ?? 0;
  return (
    (u.input * input +
      u.cacheRead * read +
      u.cacheWrite * write +
      (u.cacheWrite1h ?? 0) * (write1h - write) +
      u.output * output) /
      1e6 +
    ((u.webSearches ?? 0) * searches + (u.fileSearches ?? 0) * fileSearches) / 1e3
  );
}

/**
 * Grounding with Google Search, which the price data does not price: Gemini 3 models are billed per
 * search query the model ran ($14 per 1,000), earlier ones per grounded prompt, however many queries
 * it ran ($35 per 1,000). Google's free allowance is the organisation's, not a request's, so each is
 * counted at the list price (docs/spend.md). An admin's or the instance's own search price wins.
 */
export const GOOGLE_SEARCH_PER_THOUSAND = { perQuery: 14, perPrompt: 35 } as const;

function groundingCost(priceId: string | null, r: Resolved, model: string, u: Usage): number {
  const searches = u.webSearches ?? 0;
  // The instance's family, not the entry's: an admin's price for a Gemini model (its own entry)
  // says nothing of searches, which Google bills all the same.
  if (searches === 0 || r.prices.web_searches_kcount !== undefined || priceId !== 'google') return 0;
  return /^gemini-(?:[3-9]|\d{2,})/.test(model.toLowerCase().replace(/^models\//, ''))
    ? (searches * GOOGLE_SEARCH_PER_THOUSAND.perQuery) / 1e3
    : GOOGLE_SEARCH_PER_THOUSAND.perPrompt / 1e3;
}

export interface PriceResult {
  /** USD, or null when the model's price is unknown: never a silent $0. */
  costUsd: number | null;
  priceKnown: boolean;
  /**
   * Priced by the instance itself: "free" (self-hosted, $0 on purpose) or its own table; or
   * "priority-tier" / "flex-tier": the answer says it was served at OpenAI's priority tier or Flex
   * processing (audit/recorder.ts).
   */
  costSource?: 'free' | 'instance' | 'priority-tier' | 'flex-tier';
}

/** How one provider instance is priced: its family's id in the price data, or its own prices. */
export interface InstancePricing {
  readonly priceId: string | null;
  readonly prices: InstancePrices | undefined;
}

/** Set by scripts/build.mjs (esbuild `define`); undeclared when running from sources. */
declare const __AIBRIDGE_PRICES_VERSION__: string | undefined;

/** The version of the bundled price data, so a cost can be traced to the prices it used. */
function bundledVersion(): string {
  // The build stamps the version in; from sources (tests, tsx) it is read from node_modules.
  if (typeof __AIBRIDGE_PRICES_VERSION__ === 'string') return __AIBRIDGE_PRICES_VERSION__;
  try {
    const require = createRequire(path.join(process.cwd(), 'index.js'));
    let dir = path.dirname(require.resolve('@pydantic/genai-prices'));
    for (let i = 0; i < 4; i++) {
      const file = path.join(dir, 'package.json');
      if (fs.existsSync(file))
        return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
      dir = path.dirname(dir);
    }
  } catch {
    // Not resolvable from here: the version is informative only.
  }
  return 'unknown';
}

/** genai-prices counts `input_tokens` including cached ones; ours exclude them. */
function toGenaiUsage(u: Usage): Record<string, number> {
  return {
    input_tokens: u.input + u.cacheRead + u.cacheWrite,
    cache_read_tokens: u.cacheRead,
    cache_write_tokens: u.cacheWrite,
    output_tokens: u.output,
    // As genai-prices reads Anthropic's usage: the one-hour part of the writes, and the searches.
    ...(u.cacheWrite1h ? { cache_write_1h_tokens: u.cacheWrite1h } : {}),
    ...(u.webSearches ? { web_searches: u.webSearches } : {}),
    ...(u.fileSearches ? { storage_searches: u.fileSearches } : {}),
    // Parts of the counts above, as genai-prices reads Gemini's modality lists: its audio input
    // counts the cached audio too, which must then be given (zero or not) beside any cache read.
    ...(u.inputAudio || u.cacheReadAudio
      ? {
          input_audio_tokens: (u.inputAudio ?? 0) + (u.cacheReadAudio ?? 0),
          cache_audio_read_tokens: u.cacheReadAudio ?? 0,
        }
      : {}),
    ...(u.outputAudio ? { output_audio_tokens: u.outputAudio } : {}),
    ...(u.outputImage ? { output_image_tokens: u.outputImage } : {}),
  };
}

function toOverride(model: string, body: PriceBodyT, at: string): ModelPriceOverride {
  return {
    model,
    provider: body.provider ?? null,
    input_mtok: body.input_mtok,
    output_mtok: body.output_mtok,
    ...(body.cache_read_mtok !== undefined ? { cache_read_mtok: body.cache_read_mtok } : {}),
    ...(body.cache_write_mtok !== undefined ? { cache_write_mtok: body.cache_write_mtok } : {}),
    ...(body.cache_write_1h_mtok !== undefined ? { cache_write_1h_mtok: body.cache_write_1h_mtok } : {}),
    ...(body.web_searches_kcount !== undefined ? { web_searches_kcount: body.web_searches_kcount } : {}),
    updatedAt: at,
  };
}

/**
 * What the schema cannot say of a price body: genai-prices builds one-hour writes on the
 * five-minute price, and refuses an entry with the one and not the other.
 */
function bodyProblem(body: PriceBodyT): string | undefined {
  return body.cache_write_1h_mtok !== undefined && body.cache_write_mtok === undefined
    ? 'cache_write_1h_mtok needs cache_write_mtok beside it (the five-minute price)'
    : undefined;
}

/** Reads and validates AIBRIDGE_PRICES_FILE; a bad file stops the bridge at start, naming the setting. */
export function loadPricesFile(file: string): ModelPriceOverride[] {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError('AIBRIDGE_PRICES_FILE', `cannot read ${file}: ${(err as Error).message}`);
  }
  if (!Value.Check(PricesFile, json)) {
    const first = Value.Errors(PricesFile, json).First();
    throw new ConfigError(
      'AIBRIDGE_PRICES_FILE',
      `${file}: ${first ? `${first.path || '/'}: ${first.message}` : 'invalid'}; expected {"<model>": {"input_mtok": n, "output_mtok": n, ...}}`,
    );
  }
  const at = new Date().toISOString();
  for (const [model, body] of Object.entries(json)) {
    const problem = bodyProblem(body);
    if (problem) throw new ConfigError('AIBRIDGE_PRICES_FILE', `${file}: /${model}: ${problem}`);
  }
  return Object.entries(json).map(([model, body]) => toOverride(model, body, at));
}

/** Unknown-price models remembered at most (GET /api/v1/prices/unknown); the least recently seen go first. */
export const MAX_UNKNOWN_MODELS = 1000;

/**
 * Costs from data: the genai-prices tables bundled from npm (with cache and long-context tiers),
 * under the admin's overrides. Unknown models cost null and are remembered for
 * `GET /api/v1/prices/unknown`.
 */
export class PriceBook {
  readonly source: string;
  private readonly overrides = new Map<string, ModelPriceOverride>();
  private readonly unknown = new Map<string, UnknownModel>();
  /**
   * The price data's entry per provider and model, as a one-model provider: matching a name against
   * every model of a provider costs tens of microseconds, too much for every request. By instance,
   * then model: a request looks its model up a few times, and a key joined from the two was a new
   * string to build and hash each time.
   */
  private readonly resolved = new Map<string, Map<string, Resolved | null>>();
  private resolvedCount = 0;

  /**
   * `instances`: by instance name (the records' `provider`); an instance not named here is looked
   * up in the price data under its own name.
   */
  constructor(
    overrides: ModelPriceOverride[] = [],
    private readonly instances: Readonly<Record<string, InstancePricing>> = {},
  ) {
    this.source = `@pydantic/genai-prices@${bundledVersion()}`;
    for (const o of overrides) this.overrides.set(o.model, o);
  }

  /** The instance's own price for a model, when it has one. */
  private instancePrice(
    provider: string,
    model: string,
  ): { costSource: 'free' | 'instance'; price?: InstanceModelPrice } | undefined {
    const own = Object.hasOwn(this.instances, provider) ? this.instances[provider]!.prices : undefined;
    if (own === 'free') return { costSource: 'free' };
    const p = own && Object.hasOwn(own, model) ? own[model] : undefined;
    return p ? { costSource: 'instance', price: p } : undefined;
  }

  /** The provider id the price data knows an instance's models under; null: none. */
  /** The price data's id for a provider instance's family (`openai`, `azure`…); null for none. */
  priceIdOf(provider: string): string | null {
    return Object.hasOwn(this.instances, provider) ? this.instances[provider]!.priceId : provider;
  }

  static validateBody(model: string, body: unknown, at = new Date()): ModelPriceOverride {
    const b = body as PriceBodyT;
    const problem = bodyProblem(b);
    if (problem) throw new BridgeError('invalid_request', `${problem}.`);
    return toOverride(model, b, at.toISOString());
  }

  setOverride(o: ModelPriceOverride): void {
    this.overrides.set(o.model, o);
    this.forgetResolved();
    for (const [k, u] of this.unknown) if (u.model === o.model) this.unknown.delete(k);
  }

  deleteOverride(model: string): boolean {
    this.forgetResolved();
    return this.overrides.delete(model);
  }

  /**
   * Replaces every override (another replica changed them); later entries win over earlier ones.
   * A model priced there is no longer listed as unknown here, as when it is priced here.
   */
  replaceOverrides(list: ModelPriceOverride[]): void {
    this.overrides.clear();
    for (const o of list) this.overrides.set(o.model, o);
    this.forgetResolved();
    for (const [k, u] of this.unknown) if (this.overrides.has(u.model)) this.unknown.delete(k);
  }

  listOverrides(): ModelPriceOverride[] {
    return [...this.overrides.values()].sort((a, b) => a.model.localeCompare(b.model));
  }

  /**
   * An override applies to every provider, to the instance it names, or to every instance of the
   * family whose price-data id it names.
   */
  private modelPrice(
    instance: string,
    priceId: string | null,
    model: string,
    at: Date,
  ): { provider: Provider } | { providerId: string } | null {
    const o = this.overrideFor(instance, priceId, model);
    if (o) {
      const prices: ModelPrice = { input_mtok: o.input_mtok, output_mtok: o.output_mtok };
      if (o.cache_read_mtok !== undefined) prices.cache_read_mtok = o.cache_read_mtok;
      if (o.cache_write_mtok !== undefined) prices.cache_write_mtok = o.cache_write_mtok;
      if (o.cache_write_1h_mtok !== undefined) prices.cache_write_1h_mtok = o.cache_write_1h_mtok;
      if (o.web_searches_kcount !== undefined) prices.web_searches_kcount = o.web_searches_kcount;
      // What the override leaves out of these comes from the price data's entry for the model: an
      // admin who set negotiated token prices dropped the provider's fee per search (Anthropic's
      // $10 per 1,000) and priced one-hour cache writes as five-minute ones.
      const data =
        priceId === null
          ? undefined
          : calcPrice({ input_tokens: 1, output_tokens: 1 }, model, { providerId: priceId, timestamp: at })
              ?.model_price;
      // The price data's one-hour writes build on a cache-write price (genai-prices refuses one
      // without it): taken only beside the override's own.
      for (const k of INHERITED_FEES)
        if (
          prices[k] === undefined &&
          data?.[k] !== undefined &&
          (k !== 'cache_write_1h_mtok' || prices.cache_write_mtok !== undefined)
        )
          prices[k] = data[k];
      return {
        provider: {
          id: 'aibridge-override',
          name: 'AI Bridge override',
          api_pattern: '',
          models: [{ id: model, match: { equals: model }, prices }],
        },
      };
    }
    return priceId === null ? null : { providerId: priceId };
  }

  private forgetResolved(): void {
    this.resolved.clear();
    this.resolvedCount = 0;
  }

  /** What the price data (or an override) says for a model now; cached, since matching is slow. */
  private resolve(instance: string, priceId: string | null, model: string, at: Date): Resolved | null {
    let byModel = this.resolved.get(instance);
    const hit = byModel?.get(model);
    if (hit !== undefined && (hit === null || at.getTime() - hit.at < RESOLVE_TTL_MS)) return hit;
    const source = this.modelPrice(instance, priceId, model, at);
    const probe = source
      ? calcPrice({ input_tokens: 1, output_tokens: 1 }, model, { ...source, timestamp: at })
      : undefined;
    const r: Resolved | null = probe
      ? {
          at: at.getTime(),
          prices: probe.model_price,
          simple:
            Object.keys(probe.model_price).every((k) => SIMPLE_KEYS.has(k)) &&
            'input_mtok' in probe.model_price,
          provider: {
            id: probe.provider.id,
            name: probe.provider.name,
            api_pattern: '',
            models: [{ ...probe.model, match: { equals: model.toLowerCase().trim() } }],
          },
          dearOutput: dearOutputOf(probe.model_price),
        }
      : null;
    // Client-chosen names: bound what unknown ones can make us remember.
    if (this.resolvedCount >= 10_000) this.forgetResolved();
    byModel = this.resolved.get(instance);
    if (!byModel) {
      byModel = new Map();
      this.resolved.set(instance, byModel);
    }
    if (!byModel.has(model)) this.resolvedCount += 1;
    byModel.set(model, r);
    return r;
  }

  /**
   * The part of a model's output it prices above text (its images, its audio), for an estimate
   * that must not price an output cap spent on them as text; undefined for most models, and for
   * an instance's own prices (which have text prices only).
   */
  dearOutput(provider: string, model: string | null, at: Date = new Date()): DearOutput | undefined {
    if (!model || this.instancePrice(provider, model)) return undefined;
    return this.resolve(provider, this.priceIdOf(provider), model, at)?.dearOutput;
  }

  /** Whether an admin's price covers `model` on `provider`: what the admin says is paid for it. */
  overridden(provider: string, model: string | null): boolean {
    return model !== null && this.overrideFor(provider, this.priceIdOf(provider), model) !== undefined;
  }

  /**
   * The admin's price for `model` where it applies: to every provider, to the instance it names,
   * or to every instance of the family whose price-data id it names.
   */
  private overrideFor(
    instance: string,
    priceId: string | null,
    model: string,
  ): ModelPriceOverride | undefined {
    const o = this.overrides.get(model);
    return o && (o.provider === null || o.provider === instance || o.provider === priceId) ? o : undefined;
  }

  /** The cost of `usage` on `model`; null when the price is unknown. */
  cost(
    provider: string,
    model: string | null,
    usage: Usage,
    at: Date = new Date(),
    priceAs?: PriceAs,
  ): number | null {
    return this.costOf(provider, model, usage, at, priceAs).costUsd;
  }

  private costOf(
    provider: string,
    model: string | null,
    usage: Usage,
    at: Date,
    priceAs?: PriceAs,
  ): { costUsd: number | null; costSource?: 'free' | 'instance' } {
    const own = this.instancePrice(provider, model ?? '');
    if (own?.costSource === 'free') return { costUsd: 0, costSource: 'free' };
    if (own?.price) {
      const p = own.price;
      const prices: ModelPrice = { input_mtok: p.inputPerMTok, output_mtok: p.outputPerMTok };
      if (p.cacheReadPerMTok !== undefined) prices.cache_read_mtok = p.cacheReadPerMTok;
      if (p.cacheWritePerMTok !== undefined) prices.cache_write_mtok = p.cacheWritePerMTok;
      if (p.cacheWrite1hPerMTok !== undefined) prices.cache_write_1h_mtok = p.cacheWrite1hPerMTok;
      if (p.webSearchesPerThousand !== undefined) prices.web_searches_kcount = p.webSearchesPerThousand;
      return { costUsd: simpleCost(prices, usage), costSource: 'instance' };
    }
    return { costUsd: this.dataCost(provider, model, usage, at, priceAs) };
  }

  private dataCost(
    provider: string,
    model: string | null,
    usage: Usage,
    at: Date,
    priceAs?: PriceAs,
  ): number | null {
    if (!model) return null;
    const priceId = this.priceIdOf(provider);
    // The provider's own entry for the id the request went out with (a Bedrock inference profile's
    // geography decides its price), unless an admin priced the model itself; else the model's.
    const own = this.resolve(provider, priceId, model, at);
    const ownCost = this.costFrom(own, model, usage, at, priceId);
    if (!priceAs || this.overrideFor(provider, priceId, model)) return ownCost;
    const as = this.resolve(priceAs.priceId, priceAs.priceId, priceAs.model, at);
    const asCost = this.costFrom(as, priceAs.model, usage, at, priceAs.priceId);
    if (asCost === null || as === null || own === null || ownCost === null) return asCost ?? ownCost;
    // AWS's entries are flat: no long-context tier, no one-hour cache-write price. Never below the
    // model's own entry (which has them) scaled by what AWS adds to its base input price.
    const base = (p: ModelPrice): number => unitPrice(p.input_mtok, 0) ?? 0;
    const ratio = base(own.prices) > 0 ? Math.max(1, base(as.prices) / base(own.prices)) : 1;
    return Math.max(asCost, ownCost * ratio);
  }

  private costFrom(
    r: Resolved | null,
    model: string,
    usage: Usage,
    at: Date,
    priceId: string | null,
  ): number | null {
    if (!r) return null;
    if (r.simple) return simpleCost(r.prices, usage) + groundingCost(priceId, r, model, usage);
    const full = calcPrice(toGenaiUsage(usage), model, { provider: r.provider, timestamp: at });
    return full ? full.total_price + groundingCost(priceId, r, model, usage) : null;
  }

  /**
   * Prices a finished request, and remembers the model when its price is unknown. `answered`: the
   * model the provider's answer names. A name the price data does not know (an Azure deployment
   * not in the instance's map, an alias such as `gemini-flash-latest`) is priced as the model that
   * served it when the answer names one it knows: left unknown, it would charge no budget.
   */
  price(
    provider: string,
    model: string | null,
    usage: Usage,
    at: Date = new Date(),
    answered: string | null = null,
    priceAs?: PriceAs,
  ): PriceResult {
    let { costUsd, costSource } = this.costOf(provider, model, usage, at, priceAs);
    if (costUsd === null && answered !== null && answered !== '' && answered !== model)
      ({ costUsd, costSource } = this.costOf(provider, answered, usage, at));
    if (costUsd === null) this.noteUnknown(provider, model ?? '(none)', 1, at.toISOString());
    return { costUsd, priceKnown: costUsd !== null, ...(costSource ? { costSource } : {}) };
  }

  noteUnknown(provider: string, model: string, requests: number, at: string): void {
    const k = `${provider}\u0000${model}`;
    const u = this.unknown.get(k);
    if (!u) {
      // Model names are the client's choice: keep the most recently noted, forget the oldest.
      this.unknown.set(k, { provider, model, requests, firstSeen: at, lastSeen: at });
      if (this.unknown.size > MAX_UNKNOWN_MODELS) this.unknown.delete(this.unknown.keys().next().value!);
    } else {
      this.unknown.delete(k);
      this.unknown.set(k, u);
      u.requests += requests;
      if (at < u.firstSeen) u.firstSeen = at;
      if (at > u.lastSeen) u.lastSeen = at;
    }
  }

  /** How many unknown-price models are remembered. */
  get unknownCount(): number {
    return this.unknown.size;
  }

  listUnknown(): UnknownModel[] {
    return [...this.unknown.values()].sort((a, b) => b.requests - a.requests);
  }
}
