import type { ListedModel, ModelListing } from '../model-listing';
import { LISTED_AT } from '../model-listing';
import { anthropicErrorBody } from './errors';

function modelObject(m: ListedModel): Record<string, unknown> {
  return { type: 'model', id: m.id, display_name: m.displayName, created_at: LISTED_AT.toISOString() };
}

function badQuery(message: string): { status: number; body: unknown } {
  return { status: 400, body: anthropicErrorBody(400, message) };
}

/**
 * Anthropic's `GET /v1/models`: `{data, has_more, first_id, last_id}`, a page of `limit` (1–1000,
 * default 20) after `after_id` or before `before_id`, as the Anthropic SDKs page through it.
 */
export const anthropicModelListing: ModelListing = {
  path: '/v1/models',
  list(models, query) {
    const rawLimit = query.get('limit');
    const limit = rawLimit === null ? 20 : Number(rawLimit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      return badQuery('limit: expected an integer from 1 to 1000');
    const after = query.get('after_id');
    const before = query.get('before_id');
    if (after !== null && before !== null) return badQuery('give after_id or before_id, not both');
    let page: readonly ListedModel[];
    let hasMore: boolean;
    if (before !== null) {
      const end = models.findIndex((m) => m.id === before);
      const upTo = end === -1 ? 0 : end;
      const from = Math.max(0, upTo - limit);
      page = models.slice(from, upTo);
      hasMore = from > 0;
    } else {
      const start = after === null ? 0 : models.findIndex((m) => m.id === after) + 1;
      // An unknown after_id is past the end: an empty page, as for a model the caller may no longer use.
      const from = after !== null && start === 0 ? models.length : start;
      page = models.slice(from, from + limit);
      hasMore = from + limit < models.length;
    }
    return {
      status: 200,
      body: {
        data: page.map(modelObject),
        has_more: hasMore,
        first_id: page[0]?.id ?? null,
        last_id: page.at(-1)?.id ?? null,
      },
    };
  },
  one: modelObject,
};
