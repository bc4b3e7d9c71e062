import type { Credentials } from '../auth/sign-in';
import { Emitter } from '../emitter';

/** A model offered in VS Code's chat. */
export interface ChatModelEntry {
  readonly id: string;
  /** What the model picker shows (`fast → claude-haiku-4-5` for an alias). */
  readonly name: string;
}

/**
 * The header a bridge sets on its own per-caller model list (docs/routing.md#model-discovery). An
 * older bridge passes `/anthropic/v1/models` through to the upstream, whose list knows nothing of
 * the caller's team or aliases: without the header, the setting's models are offered instead.
 */
export const CALLER_LIST_HEADER = 'x-aibridge-model-list';

/** Pages asked for at most: a bridge lists a few dozen models, 1000 to a page. */
const MAX_PAGES = 20;

function entriesOf(body: unknown): { models: ChatModelEntry[]; next: string | null } | undefined {
  if (typeof body !== 'object' || body === null || !('data' in body) || !Array.isArray(body.data))
    return undefined;
  const models: ChatModelEntry[] = [];
  for (const m of body.data as unknown[]) {
    if (typeof m !== 'object' || m === null || !('id' in m) || typeof m.id !== 'string') continue;
    const name = 'display_name' in m && typeof m.display_name === 'string' ? m.display_name : m.id;
    models.push({ id: m.id, name });
  }
  const more = 'has_more' in body && body.has_more === true;
  const last = 'last_id' in body && typeof body.last_id === 'string' ? body.last_id : null;
  return { models, next: more ? last : null };
}

/**
 * The signed-in user's models from the bridge (`GET /anthropic/v1/models` with their key: their
 * team's policy applied, their aliases included); undefined when the bridge has no per-caller list
 * (an older bridge). Throws when the bridge cannot be reached.
 */
/** How long one page of the model list may take. */
const LIST_TIMEOUT_MS = 10_000;

export async function fetchBridgeModels(
  c: Credentials,
  fetchImpl: typeof fetch = fetch,
  timeoutMs = LIST_TIMEOUT_MS,
): Promise<ChatModelEntry[] | undefined> {
  const out: ChatModelEntry[] = [];
  let after: string | null = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const q = new URLSearchParams({ limit: '1000' });
    if (after !== null) q.set('after_id', after);
    const res = await fetchImpl(`${c.url}/anthropic/v1/models?${q}`, {
      headers: { 'x-api-key': c.key, 'anthropic-version': '2023-06-01' },
      // A bridge that takes the connection and never answers must not leave VS Code's model list
      // pending: the list is asked for again at the next refresh.
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (res.status !== 200 || res.headers.get(CALLER_LIST_HEADER) !== 'caller') {
      await res.body?.cancel();
      return undefined;
    }
    const parsed = entriesOf(await res.json());
    if (!parsed) return undefined;
    out.push(...parsed.models);
    if (parsed.next === null) return out;
    after = parsed.next;
  }
  return out;
}

export interface ChatModelListOptions {
  /** The bridge's list for the user; undefined: the bridge has none (default: `fetchBridgeModels`). */
  fetchList?: (c: Credentials) => Promise<ChatModelEntry[] | undefined>;
  /** The models of the `aibridge.chatModels` setting (or the defaults), offered when the bridge has no list. */
  fallback: () => readonly string[];
  /** Told why the bridge's list could not be read (the setting's models are offered meanwhile). */
  onError?: (err: unknown) => void;
}

/**
 * The models VS Code's chat offers (the model; lm-provider.ts renders it to VS Code): asked of the
 * bridge once per signed-in key, kept until `refresh()` (sign-in, sign-out, a new key, the setting
 * changed), which also tells VS Code to ask again.
 */
export class ChatModelList {
  private readonly changed = new Emitter<void>();
  /** Fires when the list may have changed. */
  readonly onDidChange = this.changed.event;
  private cached: { who: string; models: Promise<readonly ChatModelEntry[]> } | undefined;

  constructor(private readonly o: ChatModelListOptions) {}

  /** The models for these credentials; none when signed out. */
  models(c: Credentials | undefined): Promise<readonly ChatModelEntry[]> {
    if (!c) return Promise.resolve([]);
    const who = `${c.url}\n${c.key}`;
    if (this.cached?.who !== who) this.cached = { who, models: this.load(c) };
    return this.cached.models;
  }

  private async load(c: Credentials): Promise<readonly ChatModelEntry[]> {
    try {
      const list = await (this.o.fetchList ?? fetchBridgeModels)(c);
      if (list) return list;
    } catch (err) {
      this.o.onError?.(err);
      // Unreachable for now: the setting's models until the next refresh.
      this.cached = undefined;
    }
    return this.o.fallback().map((id) => ({ id, name: id }));
  }

  /** Forgets the list and tells VS Code to ask again. */
  refresh(): void {
    this.cached = undefined;
    this.changed.fire();
  }

  dispose(): void {
    this.changed.dispose();
  }
}
