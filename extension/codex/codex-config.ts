import { parse } from 'smol-toml';

/** The provider and profile names written to `~/.codex/config.toml`. */
export const CODEX_PROVIDER = 'aibridge';
const MARKER =
  '# Added by the AI Bridge extension ("AI Bridge: Configure Codex"). Use: codex --profile aibridge';

export interface CodexEdit {
  /** The bridge's base URL (the provider gets `<url>/openai/v1`). */
  url: string;
  /** Also make the aibridge profile Codex's default (top-level `profile = "aibridge"`). */
  makeDefault: boolean;
}

export type CodexEditResult = { ok: true; text: string; changed: boolean } | { ok: false; message: string };

/** What the provider and profile tables hold after the edit. */
export function expectedTables(url: string): {
  provider: Record<string, string>;
  profile: Record<string, string>;
} {
  return {
    provider: {
      name: 'AI Bridge',
      base_url: `${url}/openai/v1`,
      // The terminal env (aibridge.terminalEnv) puts the bridge key here.
      env_key: 'OPENAI_API_KEY',
      wire_api: 'responses',
    },
    profile: { model_provider: CODEX_PROVIDER },
  };
}

const HEADER_RE = /^\s*\[\[?\s*([^\]]*?)\s*\]\]?\s*(#.*)?$/;

/** `model_providers . "aibridge"` → `model_providers.aibridge`. */
function headerPath(inner: string): string {
  return inner
    .split('.')
    .map((p) => p.trim().replace(/^"(.*)"$|^'(.*)'$/, '$1$2'))
    .join('.');
}

function ours(path: string): boolean {
  for (const table of [`model_providers.${CODEX_PROVIDER}`, `profiles.${CODEX_PROVIDER}`]) {
    if (path === table || path.startsWith(`${table}.`)) return true;
  }
  return false;
}

/** Which lines start a table, skipping lines inside multi-line strings. */
function headerLines(lines: string[]): Map<number, string> {
  const headers = new Map<number, string>();
  let inString: '"""' | "'''" | null = null;
  lines.forEach((line, i) => {
    if (inString === null) {
      const m = HEADER_RE.exec(line);
      if (m) headers.set(i, headerPath(m[1] ?? ''));
    }
    for (const delim of ['"""', "'''"] as const) {
      let from = 0;
      for (;;) {
        const at = line.indexOf(delim, from);
        if (at === -1) break;
        if (inString === null) inString = delim;
        else if (inString === delim) inString = null;
        from = at + 3;
      }
    }
  });
  return headers;
}

function stripOurs(v: Record<string, unknown>, makeDefault: boolean): Record<string, unknown> {
  const copy = structuredClone(v);
  for (const t of ['model_providers', 'profiles']) {
    const table = copy[t] as Record<string, unknown> | undefined;
    if (table && typeof table === 'object') {
      delete table[CODEX_PROVIDER];
      if (Object.keys(table).length === 0) delete copy[t];
    }
  }
  if (makeDefault) delete copy.profile;
  return copy;
}

function stableJson(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    val && typeof val === 'object' && !Array.isArray(val) && !(val instanceof Date)
      ? Object.fromEntries(
          Object.entries(val as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)),
        )
      : val,
  );
}

function tomlString(s: string): string {
  return JSON.stringify(s);
}

/**
 * Adds (or replaces) the `aibridge` model provider and profile in a Codex config, leaving every other
 * line as it was: comments, order and the user's own providers and profiles. The result is parsed
 * and compared with the original, so an edit that would change anything else is refused.
 */
export function withBridgeProvider(original: string, edit: CodexEdit): CodexEditResult {
  let before: Record<string, unknown> = {};
  if (original.trim() !== '') {
    try {
      before = parse(original) as Record<string, unknown>;
    } catch (err) {
      return {
        ok: false,
        message: `~/.codex/config.toml is not valid TOML (${(err as Error).message.split('\n')[0]}); fix it first.`,
      };
    }
  }
  const eol = original.includes('\r\n') ? '\r\n' : '\n';
  const lines = original === '' ? [] : original.replace(/\r?\n$/, '').split(/\r?\n/);
  const headers = headerLines(lines);

  // Drop our tables (and the marker comment above them); keep everything else line for line.
  const kept: string[] = [];
  let dropping = false;
  let firstHeader = -1;
  lines.forEach((line, i) => {
    const h = headers.get(i);
    if (h !== undefined) {
      dropping = ours(h);
      if (dropping && kept.at(-1) === MARKER) kept.pop();
      if (!dropping && firstHeader === -1) firstHeader = kept.length;
    }
    if (!dropping) kept.push(line);
  });
  while (kept.length > 0 && kept.at(-1)?.trim() === '') kept.pop();

  if (edit.makeDefault) {
    const rootEnd = firstHeader === -1 ? kept.length : firstHeader;
    const line = `profile = ${tomlString(CODEX_PROVIDER)}`;
    const existing = kept.slice(0, rootEnd).findIndex((l) => /^\s*profile\s*=/.test(l));
    if (existing !== -1) kept[existing] = line;
    else {
      // After the root keys, before the first table.
      let at = rootEnd;
      while (at > 0 && kept[at - 1]?.trim() === '') at--;
      kept.splice(at, 0, line);
    }
  }

  const { provider, profile } = expectedTables(edit.url);
  const block = [
    MARKER,
    `[model_providers.${CODEX_PROVIDER}]`,
    ...Object.entries(provider).map(([k, v]) => `${k} = ${tomlString(v)}`),
    '',
    `[profiles.${CODEX_PROVIDER}]`,
    ...Object.entries(profile).map(([k, v]) => `${k} = ${tomlString(v)}`),
  ];
  const out = [...kept, ...(kept.length > 0 ? [''] : []), ...block];
  const text = out.join(eol) + eol;

  let after: Record<string, unknown>;
  try {
    after = parse(text) as Record<string, unknown>;
  } catch (err) {
    return {
      ok: false,
      message: `The aibridge provider is defined in a way this command cannot edit safely (${(err as Error).message.split('\n')[0]}); edit ~/.codex/config.toml by hand.`,
    };
  }
  const got = {
    provider: (after.model_providers as Record<string, unknown> | undefined)?.[CODEX_PROVIDER],
    profile: (after.profiles as Record<string, unknown> | undefined)?.[CODEX_PROVIDER],
    default: after.profile,
  };
  const wantDefault = edit.makeDefault ? CODEX_PROVIDER : (before.profile as unknown);
  if (
    stableJson(got.provider) !== stableJson(provider) ||
    stableJson(got.profile) !== stableJson(profile) ||
    got.default !== wantDefault ||
    stableJson(stripOurs(after, edit.makeDefault)) !== stableJson(stripOurs(before, edit.makeDefault))
  ) {
    return {
      ok: false,
      message:
        'Writing the aibridge provider would have changed other settings in ~/.codex/config.toml; edit it by hand.',
    };
  }
  return { ok: true, text, changed: text !== original };
}
