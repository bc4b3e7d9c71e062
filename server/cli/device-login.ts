import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { geminiInstance, INSTANCE_NAME } from '../../shared/gemini-instance';
import type { Me } from '../../shared/identity';
import type { AdminClientEnv } from '../config';
import { BridgeUnreachable, CliError } from './admin-client';

/** What `aibridge login` keeps: the bridge and the device key it was given. */
export interface Credentials {
  url: string;
  key: string;
  keyId: string;
  expiresAt: string | null;
  /**
   * The provider instance that serves the Gemini API (Gemini CLI's base URL is `<url>/<gemini>`),
   * as `GET /api/v1/me` said at sign-in; null when the bridge served none then, or could not be
   * asked. Absent from a file written before the bridge said.
   */
  gemini?: string | null;
}

export type Shell = 'posix' | 'fish';

/** The RFC 8628 grant type `aibridge login` polls with. */
const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';

/** `$XDG_CONFIG_HOME/aibridge/credentials.json`, else `~/.config/aibridge/credentials.json`. */
export function credentialsPath(env: Pick<AdminClientEnv, 'configHome'>): string {
  return path.join(env.configHome ?? path.join(os.homedir(), '.config'), 'aibridge', 'credentials.json');
}

/**
 * Writes the credentials readable by their owner only: the directory 0700, the file 0600 from its
 * first byte (written beside and renamed, so no reader ever sees a half-written or wider file).
 */
export function writeCredentials(file: string, creds: Credentials): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600, flag: 'w' });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
}

export function readCredentials(file: string): Credentials {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new CliError(`not signed in: no ${file}; run \`aibridge login --url <bridge>\``);
  }
  let c: Partial<Credentials>;
  try {
    c = JSON.parse(text) as Partial<Credentials>;
  } catch {
    throw new CliError(`${file} is not JSON; run \`aibridge login\` again`);
  }
  if (typeof c !== 'object' || c === null || typeof c.url !== 'string' || typeof c.key !== 'string')
    throw new CliError(`${file} is not an aibridge credentials file; run \`aibridge login\` again`);
  // A name that is no instance name is not put in a URL (the file is the user's to edit).
  const gemini = typeof c.gemini === 'string' && INSTANCE_NAME.test(c.gemini) ? c.gemini : null;
  return { url: c.url, key: c.key, keyId: c.keyId ?? '', expiresAt: c.expiresAt ?? null, gemini };
}

/**
 * The instance Gemini CLI should use, from what the bridge says it serves (`GET /api/v1/me`, the
 * extension's source for its terminals too); null when none speaks the Gemini API. Undefined when
 * the bridge could not be asked: the sign-in stands, only Gemini CLI's variables are left out.
 */
async function servedGemini(base: string, key: string): Promise<string | null | undefined> {
  try {
    const res = await fetch(`${base}/api/v1/me`, {
      headers: { authorization: `Bearer ${key}`, accept: 'application/json' },
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) return undefined;
    const me = (await res.json()) as Partial<Me>;
    return geminiInstance(Array.isArray(me.providers) ? me.providers : []) ?? null;
  } catch {
    return undefined;
  }
}

interface OAuthAnswer {
  status: number;
  body: Record<string, unknown>;
}

async function postForm(url: string, form: Record<string, string>): Promise<OAuthAnswer> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams(form).toString(),
    });
  } catch (err) {
    throw new BridgeUnreachable(url, err);
  }
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
  } catch {
    throw new CliError(
      `the bridge answered ${res.status} with something that is not JSON: ${text.slice(0, 200)}`,
    );
  }
}

function describe(body: Record<string, unknown>): string {
  const e = body.error;
  if (typeof e === 'string') return `${e}: ${String(body.error_description ?? '')}`;
  const b = e as { code?: string; message?: string } | undefined;
  return `${b?.code ?? 'error'}: ${b?.message ?? JSON.stringify(body)}`;
}

export interface LoginOptions {
  url: string;
  deviceName: string;
  file: string;
  out: (line: string) => void;
  /** Waits between polls (tests may shorten nothing: the bridge enforces the interval). */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * `aibridge login`: the RFC 8628 device flow against the bridge. Prints where to approve, polls at
 * the interval the bridge gives (slower after a `slow_down`), and stores the key it receives.
 */
export async function login(opts: LoginOptions): Promise<Credentials> {
  const base = opts.url.replace(/\/+$/, '');
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const start = await postForm(`${base}/api/v1/auth/device/code`, { device_name: opts.deviceName });
  if (start.status !== 200) throw new CliError(`cannot start the sign-in: ${describe(start.body)}`);
  const s = start.body as {
    device_code: string;
    user_code: string;
    verification_uri: string;
    verification_uri_complete: string;
    expires_in: number;
    interval: number;
  };
  opts.out(`To sign in, open ${s.verification_uri_complete}`);
  opts.out(`(or ${s.verification_uri}) and confirm the code ${s.user_code}.`);
  opts.out('Waiting for approval…');
  let interval = s.interval;
  const deadline = Date.now() + s.expires_in * 1000;
  while (Date.now() < deadline) {
    await sleep(interval * 1000);
    const r = await postForm(`${base}/api/v1/auth/device/token`, {
      grant_type: GRANT_TYPE,
      device_code: s.device_code,
    });
    if (r.status === 200) {
      const t = r.body as { access_token: string; key_id: string; expires_at: string | null };
      const creds: Credentials = { url: base, key: t.access_token, keyId: t.key_id, expiresAt: t.expires_at };
      // Kept at once: the key is live, and asking what the bridge serves may take a while.
      writeCredentials(opts.file, creds);
      const gemini = await servedGemini(base, t.access_token);
      creds.gemini = gemini ?? null;
      writeCredentials(opts.file, creds);
      opts.out(`Signed in. The key is in ${opts.file}${t.expires_at ? ` (until ${t.expires_at})` : ''}.`);
      opts.out('Run `eval "$(aibridge env)"` to point Claude Code and the SDKs at the bridge.');
      if (gemini === undefined)
        opts.out(
          'The bridge did not say what it serves: `aibridge env` leaves Gemini CLI out (run `aibridge login` again to retry).',
        );
      // Gemini CLI sends the key to its base URL only with the API-key sign-in type chosen.
      else if (gemini !== null)
        opts.out(
          `Gemini CLI too (${base}/${gemini}): choose "Use Gemini API key" in its /auth dialog, or set "security": {"auth": {"selectedType": "gemini-api-key"}} in ~/.gemini/settings.json.`,
        );
      // Codex reads no base URL from the environment: with only these variables it would call
      // OpenAI's own API, not the bridge.
      opts.out(
        `Codex ignores OPENAI_BASE_URL: give it the bridge as model provider in ~/.codex/config.toml (base_url = "${base}/openai/v1", docs/api.md).`,
      );
      return creds;
    }
    if (r.body.error === 'authorization_pending') continue;
    if (r.body.error === 'slow_down') {
      interval += 5;
      continue;
    }
    throw new CliError(`sign-in failed: ${describe(r.body)}`);
  }
  throw new CliError(
    'sign-in failed: expired_token: nobody approved the code in time; run `aibridge login` again',
  );
}

function quote(value: string, shell: Shell): string {
  return shell === 'fish' ? `'${value.replace(/[\\']/g, '\\$&')}'` : `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * `aibridge env`: the variables Claude Code, Copilot CLI, the Anthropic/OpenAI SDKs and, when the
 * bridge served Gemini at sign-in, Gemini CLI read (Codex only takes OPENAI_API_KEY, through its
 * provider table's `env_key`). Offline: it reads the credentials file only. Only
 * ANTHROPIC_AUTH_TOKEN, never ANTHROPIC_API_KEY: Claude Code asks whether to use an API key, not
 * a token, and the Anthropic SDK sends either.
 */
export function envExports(creds: Credentials, shell: Shell, now = Date.now()): string[] {
  if (creds.expiresAt !== null && Date.parse(creds.expiresAt) <= now)
    throw new CliError(`the device key expired at ${creds.expiresAt}; run \`aibridge login\` again`);
  const vars: [string, string][] = [
    ['ANTHROPIC_BASE_URL', `${creds.url}/anthropic`],
    ['ANTHROPIC_AUTH_TOKEN', creds.key],
    ['OPENAI_BASE_URL', `${creds.url}/openai/v1`],
    ['OPENAI_API_KEY', creds.key],
    // Copilot CLI's own provider, as the extension sets it (extension/terminal/env.ts): with none,
    // Copilot CLI goes to GitHub's models, past the bridge.
    ['COPILOT_PROVIDER_BASE_URL', `${creds.url}/anthropic`],
    ['COPILOT_PROVIDER_TYPE', 'anthropic'],
    ['COPILOT_PROVIDER_API_KEY', creds.key],
    ['COPILOT_PROVIDER_HEADERS', 'x-aibridge-client: copilot-cli'],
    ['COPILOT_MODEL', 'claude-sonnet-4-5'],
  ];
  // Gemini CLI appends `/v1beta/models/…` to its base URL. Only when the bridge serves Gemini, so
  // that Gemini CLI's own sign-in is left alone otherwise (as the extension's terminals do).
  if (creds.gemini)
    vars.push(['GOOGLE_GEMINI_BASE_URL', `${creds.url}/${creds.gemini}`], ['GEMINI_API_KEY', creds.key]);
  return vars.map(([k, v]) =>
    shell === 'fish' ? `set -gx ${k} ${quote(v, shell)};` : `export ${k}=${quote(v, shell)}`,
  );
}
