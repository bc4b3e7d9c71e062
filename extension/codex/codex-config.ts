import { parse } from 'smol-toml';

/** The provider name in `config.toml`, and the profile `codex --profile aibridge` selects. */
export const CODEX_PROVIDER = 'aibridge';
const MARKER = '# Added by the AI Bridge extension; removed at sign-out.';
/** The first line of the profile file we own (`aibridge.config.toml`): it is removed only when it starts so. */
export const PROFILE_MARKER =
  '# Written by the AI Bridge extension: `codex --profile aibridge`. Removed at sign-out.';
/** Where the messages say the file is (the path itself depends on CODEX_HOME). */
const FILE = 'the Codex config.toml';

export interface CodexEdit {
  /** The bridge's base URL (the provider gets `<url>/openai/v1`). */
  url: string;
  /**
   * The user asked for the bridge to be Codex's default provider (top-level `model_provider`). Without
   * it, the default is set only when the file names no other provider.
   */
  makeDefault: boolean;
  /** Folders Codex should not ask "Trust this folder?" about: VS Code's trusted workspace folders. */
  trustedFolders?: readonly string[];
  /**
   * Bring your own key (`aibridge.byok`): `OPENAI_API_KEY` is the user's own key, and the bridge key
   * goes as `X-AIBridge-Key` from the variable `env_http_headers` names.
   */
  byok?: boolean;
}

export type CodexEditResult =
  | {
      ok: true;
      text: string;
      changed: boolean;
      /** Whether plain `codex` now uses the bridge (else `codex --profile aibridge` does). */
      isDefault: boolean;
      /** Trusted folders left alone because the file has its own entry for them. */
      keptProjects: string[];
    }
  | { ok: false; message: string };

export type CodexUndoResult = { ok: true; text: string; changed: boolean } | { ok: false; message: string };

/** A value of the provider table: a string, a flag, or an inline table of strings. */
export type ProviderValue = string | boolean | Readonly<Record<string, string>>;

/**
 * The `[model_providers.aibridge]` table. `supports_websockets = false` keeps Codex on HTTP: with
 * `true` it opens the Responses API over a WebSocket, which the bridge does not serve
 * (docs/routing.md#codex-over-websocket); false is also Codex's own default for custom providers.
 */
export function expectedProvider(url: string, byok = false): Record<string, ProviderValue> {
  return {
    name: 'AI Bridge',
    base_url: `${url}/openai/v1`,
    // The terminal env (aibridge.terminalEnv) puts the bridge key here; it is never written to disk.
    // With BYOK it is the user's own key, and the bridge key comes from AIBRIDGE_KEY instead.
    env_key: 'OPENAI_API_KEY',
    wire_api: 'responses',
    supports_websockets: false,
    ...(byok ? { env_http_headers: { 'X-AIBridge-Key': 'AIBRIDGE_KEY' } } : {}),
  };
}

/** A provider table value as TOML. */
function tomlValue(v: ProviderValue): string {
  if (typeof v === 'string') return tomlString(v);
  if (typeof v === 'boolean') return String(v);
  return `{ ${Object.entries(v)
    .map(([k, x]) => `${tomlString(k)} = ${tomlString(x)}`)
    .join(', ')} }`;
}

/** The whole profile file, `$CODEX_HOME/aibridge.config.toml` (the provider table is in config.toml). */
export function codexProfileText(): string {
  return `${PROFILE_MARKER}\nmodel_provider = ${tomlString(CODEX_PROVIDER)}\n`;
}

const HEADER_RE = /^\s*\[\[?\s*([^\]]*?)\s*\]\]?\s*(#.*)?$/;
const ROOT_KEY_RE = (key: string) => new RegExp(`^\\s*${key}\\s*=\\s*(.*?)\\s*(#.*)?$`);

/** `model_providers . "aibridge"` → `model_providers.aibridge` (dots inside quotes are not split). */
function headerPath(inner: string): string[] {
  const parts: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^.\s]+)\s*(?:\.|$)/y;
  for (;;) {
    const m = re.exec(inner);
    if (!m || m[0] === '') break;
    const raw = m[1] ?? '';
    if (raw.startsWith('"')) parts.push(JSON.parse(raw) as string);
    else if (raw.startsWith("'")) parts.push(raw.slice(1, -1));
    else parts.push(raw);
    if (re.lastIndex >= inner.length) break;
  }
  return parts;
}

/** Our tables: the provider, and the legacy `[profiles.aibridge]` earlier versions wrote (codex ≥ 0.169 refuses it). */
function ours(path: string[]): boolean {
  const [top, name] = path;
  return (top === 'model_providers' || top === 'profiles') && name === CODEX_PROVIDER;
}

/** Which lines start a table (its path), skipping lines inside multi-line strings. */
export function headerLines(lines: string[]): Map<number, string[]> {
  const headers = new Map<number, string[]>();
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

export function stableJson(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    val && typeof val === 'object' && !Array.isArray(val) && !(val instanceof Date)
      ? Object.fromEntries(
          Object.entries(val as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)),
        )
      : val,
  );
}

export function tomlString(s: string): string {
  return JSON.stringify(s);
}

export type Toml = Record<string, unknown>;

export function table(v: Toml, key: string): Toml | undefined {
  const t = v[key];
  return t && typeof t === 'object' && !Array.isArray(t) ? (t as Toml) : undefined;
}

export function parseToml(text: string): { ok: true; value: Toml } | { ok: false; error: string } {
  if (text.trim() === '') return { ok: true, value: {} };
  try {
    return { ok: true, value: parse(text) as Toml };
  } catch (err) {
    return { ok: false, error: (err as Error).message.split('\n')[0] ?? 'parse error' };
  }
}

/** The value minus everything this module may write, so the rest can be compared before and after. */
function strip(v: Toml, opts: { modelProvider: boolean; projects: readonly string[] }): Toml {
  const copy = structuredClone(v);
  for (const t of ['model_providers', 'profiles']) {
    const tbl = table(copy, t);
    if (tbl) {
      delete tbl[CODEX_PROVIDER];
      if (Object.keys(tbl).length === 0) delete copy[t];
    }
  }
  if (copy.profile === CODEX_PROVIDER) delete copy.profile;
  if (opts.modelProvider) delete copy.model_provider;
  const projects = table(copy, 'projects');
  if (projects) {
    for (const p of opts.projects) delete projects[p];
    if (Object.keys(projects).length === 0) delete copy.projects;
  }
  return copy;
}

interface Split {
  eol: string;
  lines: string[];
  /** Where the first of our tables was (its marker comment included), or -1. */
  at: number;
}

/**
 * The file's lines without our tables (and the marker above them) and without the legacy top-level
 * `profile = "aibridge"`; everything else line for line.
 */
function splitOurs(original: string): Split {
  const eol = original.includes('\r\n') ? '\r\n' : '\n';
  const lines = original === '' ? [] : original.replace(/\r?\n$/, '').split(/\r?\n/);
  const headers = headerLines(lines);
  const kept: string[] = [];
  let dropping = false;
  let inRoot = true;
  let at = -1;
  lines.forEach((line, i) => {
    const h = headers.get(i);
    if (h !== undefined) {
      inRoot = false;
      dropping = ours(h);
      if (dropping) {
        if (kept.at(-1) === MARKER || kept.at(-1)?.startsWith('# Added by the AI Bridge extension'))
          kept.pop();
        if (at === -1) at = kept.length;
      }
    }
    if (inRoot) {
      const m = ROOT_KEY_RE('profile').exec(line);
      if (m && /^["']aibridge["']$/.test(m[1] ?? '')) return;
    }
    if (!dropping) kept.push(line);
  });
  return { eol, lines: kept, at };
}

/** Index just past the root keys (before the first table, blank lines before it excluded). */
function rootEnd(lines: string[]): number {
  const headers = headerLines(lines);
  let end = lines.length;
  for (const i of headers.keys()) {
    end = i;
    break;
  }
  while (end > 0 && lines[end - 1]?.trim() === '') end--;
  return end;
}

export function trimEnd(lines: string[]): string[] {
  const out = [...lines];
  while (out.length > 0 && out.at(-1)?.trim() === '') out.pop();
  return out;
}

/**
 * Adds (or replaces, in place) the `aibridge` model provider in a Codex config (codex ≥ 0.169), sets
 * the top-level `model_provider = "aibridge"` when asked to or when no other provider is the default,
 * trusts the given folders (`[projects."<path>"] trust_level = "trusted"`, unless the file already has
 * an entry for that folder: the user's own answer stays), and removes the legacy `profile = "aibridge"`
 * and `[profiles.aibridge]` earlier versions wrote. Every other line stays as it was; the result is
 * parsed and compared with the original, so an edit that would change anything else is refused.
 */
export function withBridgeProvider(original: string, edit: CodexEdit): CodexEditResult {
  const parsed = parseToml(original);
  if (!parsed.ok) return { ok: false, message: `${FILE} is not valid TOML (${parsed.error}); fix it first.` };
  const before = parsed.value;
  const split = splitOurs(original);
  let lines = split.lines;

  const current = before.model_provider;
  const isDefault = edit.makeDefault || current === undefined || current === CODEX_PROVIDER;
  const setDefault = isDefault && current !== CODEX_PROVIDER;
  const line = `model_provider = ${tomlString(CODEX_PROVIDER)}`;
  let at = split.at;
  if (setDefault) {
    const end = rootEnd(lines);
    const existing = lines.slice(0, end).findIndex((l) => ROOT_KEY_RE('model_provider').test(l));
    if (existing !== -1) lines[existing] = line;
    else {
      lines.splice(end, 0, line);
      if (at !== -1 && at >= end) at++;
      // A new root key right before a table needs a blank line to stay readable.
      if (lines[end + 1] !== undefined && lines[end + 1]?.trim() !== '') {
        lines.splice(end + 1, 0, '');
        if (at !== -1 && at > end) at++;
      }
    }
  }

  const provider = expectedProvider(edit.url, edit.byok === true);
  const block = [
    MARKER,
    `[model_providers.${CODEX_PROVIDER}]`,
    ...Object.entries(provider).map(([k, v]) => `${k} = ${tomlValue(v)}`),
  ];
  if (at === -1) {
    lines = trimEnd(lines);
    lines = [...lines, ...(lines.length > 0 ? [''] : []), ...block];
  } else {
    const head = lines.slice(0, at);
    const tail = lines.slice(at);
    const sep = tail.length > 0 && tail[0]?.trim() !== '' ? [''] : [];
    lines = [
      ...head,
      ...(head.length > 0 && head.at(-1)?.trim() !== '' ? [''] : []),
      ...block,
      ...sep,
      ...tail,
    ];
  }

  const projectsBefore = table(before, 'projects') ?? {};
  const added: string[] = [];
  const keptProjects: string[] = [];
  for (const folder of new Set(edit.trustedFolders ?? [])) {
    if (folder in projectsBefore) {
      keptProjects.push(folder);
      continue;
    }
    added.push(folder);
    lines = [
      ...trimEnd(lines),
      '',
      `[projects.${tomlString(folder)}]`,
      `trust_level = ${tomlString('trusted')}`,
    ];
  }

  const text = `${trimEnd(lines).join(split.eol)}${split.eol}`;
  const reparsed = parseToml(text);
  const refusal = {
    ok: false as const,
    message: `Writing the aibridge provider would have changed other settings in ${FILE}, or it defines them in a way this cannot edit safely; edit it by hand.`,
  };
  if (!reparsed.ok) return refusal;
  const after = reparsed.value;
  const projectsAfter = table(after, 'projects') ?? {};
  if (
    stableJson(table(after, 'model_providers')?.[CODEX_PROVIDER]) !== stableJson(provider) ||
    table(after, 'profiles')?.[CODEX_PROVIDER] !== undefined ||
    after.profile === CODEX_PROVIDER ||
    after.model_provider !== (isDefault ? CODEX_PROVIDER : current) ||
    added.some((f) => stableJson(projectsAfter[f]) !== stableJson({ trust_level: 'trusted' })) ||
    stableJson(strip(after, { modelProvider: setDefault, projects: added })) !==
      stableJson(strip(before, { modelProvider: setDefault, projects: added }))
  ) {
    return refusal;
  }
  return { ok: true, text, changed: text !== original, isDefault, keptProjects };
}

/**
 * Removes what {@link withBridgeProvider} added for the bridge (sign-out): the provider table, the
 * top-level `model_provider = "aibridge"` (Codex falls back to its own default) and the legacy
 * profile lines. Trusted folders stay: they are the user's answer, and harmless without the bridge.
 */
export function withoutBridgeProvider(original: string): CodexUndoResult {
  const parsed = parseToml(original);
  if (!parsed.ok) return { ok: false, message: `${FILE} is not valid TOML (${parsed.error}); fix it first.` };
  const before = parsed.value;
  const split = splitOurs(original);
  const ownsDefault = before.model_provider === CODEX_PROVIDER;
  let lines = split.lines;
  if (ownsDefault) {
    const i = lines.slice(0, rootEnd(lines)).findIndex((l) => ROOT_KEY_RE('model_provider').test(l));
    if (i !== -1) {
      // The blank line written after it goes too, when it would now lead the file or double a blank.
      const blankAfter = lines[i + 1]?.trim() === '' && (i === 0 || lines[i - 1]?.trim() === '');
      lines.splice(i, blankAfter ? 2 : 1);
    }
  }
  lines = trimEnd(lines);
  const text = lines.length === 0 ? '' : `${lines.join(split.eol)}${split.eol}`;
  if (text === original) return { ok: true, text, changed: false };
  const reparsed = parseToml(text);
  if (
    !reparsed.ok ||
    table(reparsed.value, 'model_providers')?.[CODEX_PROVIDER] !== undefined ||
    reparsed.value.model_provider === CODEX_PROVIDER ||
    stableJson(strip(reparsed.value, { modelProvider: ownsDefault, projects: [] })) !==
      stableJson(strip(before, { modelProvider: ownsDefault, projects: [] }))
  ) {
    return {
      ok: false,
      message: `Removing the aibridge provider would have changed other settings in ${FILE}; edit it by hand.`,
    };
  }
  return { ok: true, text, changed: true };
}
