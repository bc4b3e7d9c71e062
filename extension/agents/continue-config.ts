import path from 'node:path';
import { isMap, isSeq, parseDocument } from 'yaml';
import { homeDir } from '../home-dir';

type Env = Record<string, string | undefined>;

/** The header that names the client to the bridge (server/proxy/client-detect.ts `CLIENT_HEADER`). */
const CLIENT_HEADER = 'x-aibridge-client';
/** The value that names Continue, and marks the models this file's edit added: undo removes those only. */
export const CONTINUE_CLIENT = 'continue';

/** Continue's local config: `$CONTINUE_GLOBAL_DIR/config.yaml`, by default `~/.continue/config.yaml`. */
export function continueConfigPath(env: Env = process.env): string {
  const dir = env.CONTINUE_GLOBAL_DIR?.trim() || path.join(homeDir(env), '.continue');
  return path.join(dir, 'config.yaml');
}

export interface ContinueModels {
  /** The bridge's base URL. */
  url: string;
  /** The signed-in user's bridge key: Continue reads its key from this file only. */
  key: string;
  /** Anthropic model ids to offer through `/anthropic`. */
  anthropicModels: readonly string[];
  /** OpenAI model ids to offer through `/openai/v1`. */
  openaiModels?: readonly string[];
}

export type ContinueEditResult =
  | { ok: true; text: string; changed: boolean }
  | { ok: false; message: string };

/** A new config, as Continue itself starts one: `name`, `version`, `schema: v1`. */
const NEW_CONFIG = 'name: Local Config\nversion: 1.0.0\nschema: v1\n';

function modelEntries(o: ContinueModels): Record<string, unknown>[] {
  const headers = { [CLIENT_HEADER]: CONTINUE_CLIENT };
  const entry = (provider: string, apiBase: string, model: string) => ({
    name: `AI Bridge ${model}`,
    provider,
    model,
    apiBase,
    apiKey: o.key,
    roles: ['chat', 'edit', 'apply'],
    requestOptions: { headers },
  });
  return [
    ...o.anthropicModels.map((m) => entry('anthropic', `${o.url}/anthropic/v1/`, m)),
    ...(o.openaiModels ?? []).map((m) => entry('openai', `${o.url}/openai/v1/`, m)),
  ];
}

function isOurs(item: unknown): boolean {
  return isMap(item) && item.getIn(['requestOptions', 'headers', CLIENT_HEADER]) === CONTINUE_CLIENT;
}

/**
 * Edits the YAML as a document, so the user's models, comments and other blocks stay as written;
 * only the models an earlier edit added (marked by their `x-aibridge-client: continue` header) are
 * replaced. Text that is not a YAML mapping, or whose `models` is not a list, is refused.
 */
function edit(original: string, add: Record<string, unknown>[]): ContinueEditResult {
  const doc = parseDocument(original.trim() === '' ? NEW_CONFIG : original);
  if (doc.errors.length > 0)
    return {
      ok: false,
      message: `the Continue config is not valid YAML (${doc.errors[0]!.message}); left as it is.`,
    };
  if (!isMap(doc.contents))
    return { ok: false, message: 'the Continue config is not a YAML mapping; left as it is.' };
  const models = doc.get('models', true);
  if (models !== undefined && !isSeq(models))
    return { ok: false, message: 'the Continue config has a "models" that is not a list; left as it is.' };
  const kept = (models?.items ?? []).filter((m) => !isOurs(m));
  const removed = (models?.items.length ?? 0) - kept.length;
  if (removed === 0 && add.length === 0) return { ok: true, text: original, changed: false };
  if (kept.length === 0 && add.length === 0) doc.delete('models');
  else {
    const seq = models ?? doc.createNode([]);
    seq.items = [...kept, ...add.map((m) => doc.createNode(m))];
    doc.set('models', seq);
  }
  const text = doc.toString();
  return { ok: true, text, changed: text !== original };
}

/** Continue's config with the bridge's models in it, the user's own entries kept. */
export function withBridgeModels(original: string, o: ContinueModels): ContinueEditResult {
  return edit(original, modelEntries(o));
}

/** Sign-out: the config without the models {@link withBridgeModels} added. */
export function withoutBridgeModels(original: string): ContinueEditResult {
  if (original.trim() === '') return { ok: true, text: original, changed: false };
  return edit(original, []);
}
