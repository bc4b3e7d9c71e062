import { nearestName } from './core/nearest-name';
import type { PoolKeyConfig } from './providers/family';
import { allFamilies, familyOf, type InstanceConfig } from './providers/registry';
import type { JsonObject } from './providers/types';

/** A model's price on one instance, in USD per million tokens. */
export interface InstanceModelPrice {
  readonly inputPerMTok: number;
  readonly outputPerMTok: number;
  readonly cacheReadPerMTok?: number;
  /** Cache writes (Anthropic's five-minute ones); without it, at the input price. */
  readonly cacheWritePerMTok?: number;
  /** One-hour cache writes; without it, at the cache-write price. */
  readonly cacheWrite1hPerMTok?: number;
  /** USD per 1,000 web searches the provider ran (Anthropic's `web_search_requests`). */
  readonly webSearchesPerThousand?: number;
}

/** The fields of an instance's model price; all but the first two may be left out. */
const INSTANCE_PRICE_FIELDS = [
  'inputPerMTok',
  'outputPerMTok',
  'cacheReadPerMTok',
  'cacheWritePerMTok',
  'cacheWrite1hPerMTok',
  'webSearchesPerThousand',
] as const;

/** An instance's own prices: a table by model, or "free" (self-hosted: recorded as $0 on purpose). */
export type InstancePrices = 'free' | Readonly<Record<string, InstanceModelPrice>>;

/** Where one provider instance's traffic goes, with which credential, priced how. */
export interface UpstreamConfig extends InstanceConfig {
  /** Whether it can serve (a key, a credential chain, or an upstream that needs none). */
  readonly configured: boolean;
  /** The family's id in the price data; null: only `prices`. */
  readonly priceId: string | null;
  readonly prices: InstancePrices | undefined;
}

/** Instance names are route prefixes: these are the bridge's own routes. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([
  'api',
  'admin',
  'device',
  'scim',
  'mcp',
  'metrics',
  'healthz',
  'readyz',
  'livez',
  'login',
  'logout',
  'oauth',
  'auth',
  'static',
  'assets',
  'docs',
  'well-known',
]);

export const INSTANCE_NAME = /^[a-z][a-z0-9-]{0,31}$/;

const COMMON_FIELDS = ['type', 'baseUrl', 'apiKey', 'keys', 'prices'];
/** The providers file's own fields (docs/providers.md), and `$schema` for editors. */
const FILE_FIELDS = ['providers', 'aliases', 'routes', 'byok'];

/** A pool key's name: in metrics, logs, records and the admin API's paths. */
export const KEY_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/** A problem in the providers file, naming the entry and field. */
export class ProvidersFileError extends Error {
  constructor(entry: string | null, field: string | null, message: string) {
    const where =
      entry === null ? '' : field === null ? `providers.${entry}: ` : `providers.${entry}.${field}: `;
    super(`${where}${message}`);
    this.name = 'ProvidersFileError';
  }
}

function isPlainObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkUrl(entry: string, field: string, raw: unknown): string {
  if (typeof raw !== 'string') throw new ProvidersFileError(entry, field, 'expected an http(s) URL');
  let u: URL;
  // The value is not echoed: a URL's password is a secret.
  try {
    u = new URL(raw);
  } catch {
    throw new ProvidersFileError(entry, field, 'expected an http(s) URL, starting with http:// or https://');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new ProvidersFileError(entry, field, `expected an http(s) URL, got a ${u.protocol} one`);
  if (u.search || u.hash)
    throw new ProvidersFileError(entry, field, 'must not have a query string or fragment');
  return raw.replace(/\/+$/, '');
}

function checkPrices(entry: string, raw: unknown): InstancePrices | undefined {
  if (raw === undefined) return undefined;
  if (raw === 'free') return 'free';
  if (!isPlainObject(raw))
    throw new ProvidersFileError(
      entry,
      'prices',
      'expected "free" or an object of model to {inputPerMTok, outputPerMTok}',
    );
  const out: Record<string, InstanceModelPrice> = {};
  for (const [model, p] of Object.entries(raw)) {
    const field = `prices.${model}`;
    if (!isPlainObject(p))
      throw new ProvidersFileError(entry, field, 'expected {inputPerMTok, outputPerMTok}');
    for (const k of Object.keys(p))
      if (!(INSTANCE_PRICE_FIELDS as readonly string[]).includes(k))
        throw new ProvidersFileError(entry, `${field}.${k}`, 'unknown field');
    for (const k of INSTANCE_PRICE_FIELDS) {
      const v = p[k];
      if (v === undefined && k !== 'inputPerMTok' && k !== 'outputPerMTok') continue;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
        throw new ProvidersFileError(
          entry,
          `${field}.${k}`,
          k === 'webSearchesPerThousand'
            ? 'expected a number of USD per 1,000 searches, 0 or more'
            : 'expected a number of USD per million tokens, 0 or more',
        );
    }
    out[model] = p as unknown as InstanceModelPrice;
  }
  return out;
}

/** A secret as a string or `{"fromEnv": "VAR"}` (the variable must be set). */
function secretOf(
  read: (name: string) => string | undefined,
  entry: string,
  field: string,
  k: unknown,
): string {
  // Around a key, white space is a mistake (a secret file's newline), and the provider refuses it.
  if (typeof k === 'string' && k.trim() !== '') return k.trim();
  if (isPlainObject(k) && typeof k.fromEnv === 'string' && Object.keys(k).length === 1) {
    const v = read(k.fromEnv)?.trim() || undefined;
    if (v === undefined)
      throw new ProvidersFileError(entry, field, `the environment variable ${k.fromEnv} is not set`);
    return v;
  }
  throw new ProvidersFileError(entry, field, 'expected a key, or {"fromEnv": "VAR"}');
}

/** A limit or weight: a positive number (`integer`: a whole one). */
function positive(entry: string, field: string, v: unknown, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v)))
    throw new ProvidersFileError(entry, field, `expected a positive ${integer ? 'integer' : 'number'}`);
  return v;
}

/** `keys`: a key pool (docs/routing.md#key-pools), names unique within the instance. */
function checkKeys(
  read: (name: string) => string | undefined,
  entry: string,
  raw: unknown,
): readonly PoolKeyConfig[] {
  if (!Array.isArray(raw) || raw.length === 0)
    throw new ProvidersFileError(
      entry,
      'keys',
      'expected a non-empty array of {name, key, weight?, rpm?, tpm?}',
    );
  const seen = new Set<string>();
  return raw.map((k: unknown, i) => {
    const at = `keys[${i}]`;
    if (!isPlainObject(k))
      throw new ProvidersFileError(entry, at, 'expected {name, key, weight?, rpm?, tpm?}');
    for (const f of Object.keys(k))
      if (!['name', 'key', 'weight', 'rpm', 'tpm'].includes(f))
        throw new ProvidersFileError(entry, `${at}.${f}`, 'unknown field');
    if (typeof k.name !== 'string' || !KEY_NAME.test(k.name))
      throw new ProvidersFileError(
        entry,
        `${at}.name`,
        'expected a name matching ^[a-z0-9][a-z0-9_-]{0,31}$',
      );
    if (seen.has(k.name)) throw new ProvidersFileError(entry, `${at}.name`, `"${k.name}" is given twice`);
    seen.add(k.name);
    const weight = positive(entry, `${at}.weight`, k.weight, false);
    const rpm = positive(entry, `${at}.rpm`, k.rpm, true);
    const tpm = positive(entry, `${at}.tpm`, k.tpm, true);
    return {
      name: k.name,
      key: secretOf(read, entry, `${at}.key`, k.key),
      ...(weight !== undefined ? { weight } : {}),
      ...(rpm !== undefined ? { rpm } : {}),
      ...(tpm !== undefined ? { tpm } : {}),
    };
  });
}

/**
 * The configured provider instances, by name: the built-in instance of every family that has one
 * (from its environment variables), then the providers file's entries, which may redefine a
 * built-in one. `read` is config's environment reader (config.ts is the only one).
 */
export function providerInstances(
  read: (name: string) => string | undefined,
  fileJson: unknown,
): Readonly<Record<string, UpstreamConfig>> {
  const out: Record<string, UpstreamConfig> = {};
  for (const f of allFamilies()) {
    if (!f.env) continue;
    const settings = {
      name: f.type,
      type: f.type,
      baseUrl: read(f.env.baseUrl) ?? f.defaultBaseUrl ?? '',
      // A key read from a secret file often ends with its newline, which the provider refuses.
      apiKey: read(f.env.apiKey)?.trim() || undefined,
      options: {},
    };
    if (f.env.onlyWithKey && settings.apiKey === undefined) continue;
    out[f.type] = { ...settings, configured: f.configured(settings), priceId: f.priceId, prices: undefined };
  }
  if (fileJson === undefined) return out;
  if (!isPlainObject(fileJson) || !isPlainObject(fileJson.providers))
    throw new ProvidersFileError(null, null, 'expected {"providers": {"<name>": {"type": …}, …}}');
  // A misspelt "routes" or "aliases" must not start a bridge without failover or aliases, unsaid.
  for (const k of Object.keys(fileJson))
    if (!FILE_FIELDS.includes(k) && k !== '$schema') {
      const near = nearestName(k.toLowerCase(), FILE_FIELDS);
      throw new ProvidersFileError(
        null,
        null,
        `"${k}" is not a field of the providers file (${FILE_FIELDS.join(', ')})${near ? `: did you mean "${near}"?` : ''}`,
      );
    }
  for (const [name, entry] of Object.entries(fileJson.providers)) {
    if (!INSTANCE_NAME.test(name))
      throw new ProvidersFileError(
        name,
        null,
        'the name must match ^[a-z][a-z0-9-]{0,31}$ (it is the route prefix)',
      );
    if (RESERVED_NAMES.has(name))
      throw new ProvidersFileError(name, null, `"${name}" is one of the bridge's own routes`);
    if (!isPlainObject(entry)) throw new ProvidersFileError(name, null, 'expected an object with a "type"');
    if (typeof entry.type !== 'string')
      throw new ProvidersFileError(name, 'type', 'expected a provider type');
    const family = familyOf(entry.type);
    if (!family)
      throw new ProvidersFileError(
        name,
        'type',
        `unknown type "${entry.type}"; one of ${allFamilies()
          .map((f) => f.type)
          .join(', ')}`,
      );
    for (const k of Object.keys(entry))
      if (!COMMON_FIELDS.includes(k) && !family.fields.includes(k))
        throw new ProvidersFileError(name, k, `unknown field for type ${family.type}`);
    // A built-in redefined without a `baseUrl` keeps its environment's one
    // (`AIBRIDGE_ANTHROPIC_BASE_URL`, ...): the variable is documented as that route's upstream,
    // and adding a key pool to `anthropic` must not quietly send its traffic somewhere else.
    const envBaseUrl = family.env && name === family.type ? read(family.env.baseUrl) : undefined;
    let baseUrl: string;
    if (entry.baseUrl !== undefined) baseUrl = checkUrl(name, 'baseUrl', entry.baseUrl);
    else if (envBaseUrl) baseUrl = envBaseUrl;
    else if (family.defaultBaseUrl) baseUrl = family.defaultBaseUrl;
    else throw new ProvidersFileError(name, 'baseUrl', `required for type ${family.type}`);
    const apiKey = entry.apiKey === undefined ? undefined : secretOf(read, name, 'apiKey', entry.apiKey);
    if (entry.keys !== undefined && entry.apiKey !== undefined)
      throw new ProvidersFileError(name, 'keys', 'takes the place of "apiKey": give one or the other');
    if (entry.keys !== undefined && family.keyPools === false)
      throw new ProvidersFileError(name, 'keys', `an instance of type ${family.type} takes no key pool`);
    const problem = family.validate(entry);
    if (problem) throw new ProvidersFileError(name, problem.field, problem.message);
    const options: JsonObject = {};
    for (const f of family.fields) if (entry[f] !== undefined) options[f] = entry[f];
    const keys = entry.keys === undefined ? undefined : checkKeys(read, name, entry.keys);
    const settings = { name, type: family.type, baseUrl, apiKey, options, ...(keys ? { keys } : {}) };
    // A redefined built-in keeps its place; a new name comes after.
    out[name] = {
      ...settings,
      configured: family.configured(settings),
      priceId: family.priceId,
      prices: checkPrices(name, entry.prices),
    };
  }
  return out;
}

/**
 * The teams whose members may send their own provider credentials (the providers file's top-level
 * `"byok": {"teams": ["platform"]}`, `"*"` for every team; docs/routing.md). None without it.
 */
export function byokTeams(fileJson: unknown): readonly string[] {
  if (!isPlainObject(fileJson) || fileJson.byok === undefined) return [];
  const b = fileJson.byok;
  if (!isPlainObject(b)) throw new ProvidersFileError(null, null, 'byok: expected {"teams": ["<team>", …]}');
  for (const k of Object.keys(b))
    if (k !== 'teams') throw new ProvidersFileError(null, null, `byok.${k}: unknown field`);
  const teams = b.teams;
  if (
    !Array.isArray(teams) ||
    !teams.every((t): t is string => typeof t === 'string' && t.length > 0 && t.length <= 100)
  )
    throw new ProvidersFileError(null, null, 'byok.teams: expected team names (or "*" for every team)');
  return Object.freeze([...teams]);
}
