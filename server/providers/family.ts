import type { JsonObject, ProviderAdapter } from './types';

/** One configured instance of a family: the providers file's entry, or the built-in one from the environment. */
export interface InstanceSettings {
  /** The instance name: its route prefix (`/<name>`) and the `provider` its records carry. */
  readonly name: string;
  readonly baseUrl: string;
  /** The organisation's key, already resolved (`{"fromEnv": …}` read by config); never logged. */
  readonly apiKey: string | undefined;
  /** A pool of named keys in place of `apiKey` (server/routing/key-pool.ts); absent: none in the file. */
  readonly keys?: readonly PoolKeyConfig[];
  /** The family's own fields from the providers file, as validated by `validate`. */
  readonly options: JsonObject;
}

/** One key of an instance's pool, as the providers file gives it (the secret resolved); never logged. */
export interface PoolKeyConfig {
  readonly name: string;
  readonly key: string;
  /** Share of the requests relative to the other keys; default 1. */
  readonly weight?: number;
  /** Requests per minute this key may carry. */
  readonly rpm?: number;
  /** Tokens per minute this key may carry. */
  readonly tpm?: number;
}

/** A field of a providers-file entry that is wrong, for an error naming the entry and field. */
export interface FieldProblem {
  readonly field: string;
  readonly message: string;
}

/**
 * A provider family is one folder under server/providers/: everything the bridge needs to serve
 * an instance of it. Config reads its settings by the names declared here, the price book looks
 * models up under its price-data id, and the proxy mounts what `create` returns. Nothing outside
 * the folder names the family.
 */
export interface ProviderFamily {
  /** The providers file's `type`. */
  readonly type: string;
  /** Base URL when an instance gives none; undefined: `baseUrl` is required. */
  readonly defaultBaseUrl: string | undefined;
  /**
   * Environment variables of the built-in instance named after the type, served without a
   * providers file; absent: the family has instances only when the file names them.
   * `onlyWithKey`: the built-in instance exists only when its key variable is set (a family most
   * bridges do not use should not claim a route prefix or show on /readyz unasked).
   */
  readonly env?: { readonly baseUrl: string; readonly apiKey: string; readonly onlyWithKey?: boolean };
  /** The provider id in the price data (@pydantic/genai-prices); null: only the instance's own `prices`. */
  readonly priceId: string | null;
  /**
   * False for a family whose instances take no key pool (`keys`): they sign with a credential
   * chain (Bedrock). Absent: keys are sent the way `authHeaders(key)` sends them.
   */
  readonly keyPools?: false;
  /** Fields an entry may have beyond `type`, `baseUrl`, `apiKey`, `keys` and `prices`. */
  readonly fields: readonly string[];
  /** Checks the family's own fields; the first problem found. */
  validate(entry: JsonObject): FieldProblem | undefined;
  /** Whether an instance can serve (a key, or a family whose upstream needs none). */
  configured(s: InstanceSettings): boolean;
  /** The adapter for one instance: the family's wire APIs, tuned by the instance's settings. */
  create(s: InstanceSettings): ProviderAdapter;
  /**
   * The models an instance lists (docs/routing.md#model-discovery) when the price data's models of
   * its family are not, or not all, what its clients can send. Absent: the price data's.
   */
  listedModels?(s: InstanceSettings): ListedNames;
}

/** An instance's own model names, each with the model a request for it is judged and priced as. */
export interface ListedNames {
  /** Whether the price data's models of the family are listed too (they work as clients send them). */
  readonly priceData: boolean;
  readonly names: readonly { readonly id: string; readonly servedAs: string }[];
}

/** Whether an instance has a key of its own or a pool of them. */
export const hasKey = (s: InstanceSettings): boolean => s.apiKey !== undefined || (s.keys?.length ?? 0) > 0;

/** Families whose upstream needs a key are configured by one (or by a pool). */
export const KEY_REQUIRED = hasKey;

/** No family-specific fields. */
export const NO_FIELDS = (): FieldProblem | undefined => undefined;

/** `base + target`, the base's trailing slash dropped so `…/v1/` and `…/v1` mean the same. */
export function joinUrl(base: string, target: string): string {
  // Checked first: a base without one (most) needs no regular expression on every request.
  return (base.endsWith('/') ? base.replace(/\/+$/, '') : base) + target;
}
