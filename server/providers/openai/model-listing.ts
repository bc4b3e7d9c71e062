import type { ListedModel, ModelListing } from '../model-listing';
import { LISTED_AT } from '../model-listing';

function modelObject(m: ListedModel): Record<string, unknown> {
  return { id: m.id, object: 'model', created: Math.floor(LISTED_AT.getTime() / 1000), owned_by: m.ownedBy };
}

/** OpenAI's `GET /v1/models`: `{object: "list", data}`, unpaginated. */
export const openaiModelListing: ModelListing = {
  path: '/models',
  list: (models) => ({ status: 200, body: { object: 'list', data: models.map(modelObject) } }),
  one: modelObject,
};
