import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Agent, fetch, type Response } from 'undici';
import { ADMIN_KEY_FILE } from '../bootstrap';
import type { AdminClientEnv } from '../config';
import { withoutUrlSecrets } from '../core/url-secrets';

/**
 * The admin CLI waits for its answer however long the bridge takes: `audit verify` of a few
 * million records answers after minutes, and fetch's default five-minute wait for headers ended it
 * with "cannot reach the bridge". Ctrl-C stops it.
 */
let patient: Agent | undefined;
const dispatcher = (): Agent => (patient ??= new Agent({ headersTimeout: 0, bodyTimeout: 0 }));

export interface AdminTarget {
  url: string;
  adminKey: string;
}

export class CliError extends Error {}

/**
 * The bridge did not answer at all (not running, restarting, a wrong `--url`): exit 1 as anything
 * unexpected, not 2 as a refusal, so a script can tell a bridge to wait for from a request to fix.
 */
export class BridgeUnreachable extends Error {
  constructor(url: string, err: unknown) {
    super(
      withoutUrlSecrets(
        `cannot reach the bridge at ${url}: ${(err as Error).cause ?? (err as Error).message}`,
      ),
      {
        cause: err,
      },
    );
    this.name = 'BridgeUnreachable';
  }
}

/** `--url`/AIBRIDGE_URL and `--admin-key`/AIBRIDGE_ADMIN_KEY, else the local bridge and its admin.key. */
export function resolveTarget(
  flags: { url?: string | undefined; 'admin-key'?: string | undefined; 'data-dir'?: string | undefined },
  env: AdminClientEnv,
): AdminTarget {
  const url = (flags.url ?? env.url ?? `http://127.0.0.1:${env.port || 7410}`).replace(/\/+$/, '');
  // A URL that cannot be called is a usage error (exit 2), not a bridge to wait for (exit 1).
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:'))
    throw new CliError(
      "--url (or AIBRIDGE_URL) must be the bridge's http(s) URL, such as http://127.0.0.1:7410",
    );
  if (parsed.username !== '' || parsed.password !== '')
    throw new CliError(
      '--url (or AIBRIDGE_URL) must not carry a user name or password; the admin key is given with --admin-key',
    );
  // The base URL an agent is given is not the bridge's own: its admin API is at the root.
  const provider = /\/(anthropic|openai|gemini)(\/v1(beta)?)?$/.exec(url);
  if (provider)
    throw new CliError(
      `--url is the bridge's own URL (${url.slice(0, provider.index)}), not a provider route such as ${provider[0]}`,
    );
  let adminKey = flags['admin-key'] ?? env.adminKey;
  if (!adminKey) {
    const file = path.join(path.resolve(flags['data-dir'] ?? env.dataDir ?? '.aibridge'), ADMIN_KEY_FILE);
    try {
      adminKey = fs.readFileSync(file, 'utf8').trim();
    } catch {
      throw new CliError(
        `no admin key: pass --admin-key, set AIBRIDGE_ADMIN_KEY, or run where ${file} exists`,
      );
    }
  }
  return { url, adminKey };
}

/** Calls the admin API; a non-2xx answer becomes a CliError carrying the bridge's error code. */
export async function callApi(
  target: AdminTarget,
  method: string,
  route: string,
  body?: unknown,
): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${target.url}${route}`, {
      method,
      dispatcher: dispatcher(),
      headers: {
        authorization: `Bearer ${target.adminKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (err) {
    throw new BridgeUnreachable(target.url, err);
  }
  const text = await res.text();
  const json = parsed(text);
  if (!res.ok) throw answerError(res.status, text, json);
  return json;
}

function parsed(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // Not JSON (a proxy's error page): the error quotes the status and the text instead.
    return undefined;
  }
}

/** A refusal as `code: message` (the bridge's error shape), else the status and the text. */
function answerError(status: number, text: string, json: unknown): CliError {
  const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
  return new CliError(`${e?.code ?? `http_${status}`}: ${e?.message ?? text}`);
}

/** Streams a GET answer to `out` (exports of millions of records never sit in memory). */
export async function streamApi(
  target: AdminTarget,
  route: string,
  out: NodeJS.WritableStream,
): Promise<void> {
  let res: Response;
  try {
    res = await fetch(`${target.url}${route}`, {
      dispatcher: dispatcher(),
      headers: { authorization: `Bearer ${target.adminKey}` },
    });
  } catch (err) {
    throw new BridgeUnreachable(target.url, err);
  }
  if (!res.ok || !res.body) {
    const text = await res.text();
    throw answerError(res.status, text, parsed(text));
  }
  await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), out);
}
