/** A model as the bridge lists it to a caller (server/routing/model-catalog.ts builds the list). */
export interface ListedModel {
  readonly id: string;
  /** A human name (the price data's, or `fast → claude-haiku-4-5` for an alias). */
  readonly displayName: string;
  /** Who provides it: the instance's family, or `aibridge` for an alias. */
  readonly ownedBy: string;
}

/** A model-list answer: its status and body, in the API's own shape. */
export interface ListingAnswer {
  readonly status: number;
  readonly body: unknown;
}

/**
 * A provider's model-list endpoints as a wire format: the bridge answers them itself with the
 * models a caller may use, in the shape the provider's SDKs read (their `models.list()`).
 */
export interface ModelListing {
  /** The list's path below the instance's prefix (`/v1/models`); `{path}/{id}` is one model. */
  readonly path: string;
  /** The list for a query (the API's pagination parameters); a bad parameter is a 400 in the API's shape. */
  list(models: readonly ListedModel[], query: URLSearchParams): ListingAnswer;
  /** One model. */
  one(model: ListedModel): unknown;
}

/**
 * The price data carries no release dates and the upstream is not asked (docs/routing.md):
 * every listed model has this one, so a client sorting by date keeps the bridge's order.
 */
export const LISTED_AT = new Date(0);

/** A `models` map (client name → provider id) as listed names, each judged as the model its id prices as. */
export function mappedNames(
  map: Readonly<Record<string, string>>,
  priceModelOf: (id: string) => string,
): { id: string; servedAs: string }[] {
  return Object.entries(map).map(([id, target]) => ({ id, servedAs: priceModelOf(target) }));
}
