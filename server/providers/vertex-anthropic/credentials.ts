import fs from 'node:fs/promises';
import type { GoogleAuth, JWTInput } from 'google-auth-library';
import { commonJs } from '../../core/commonjs';
import { isObject } from '../common';

/** The scope Vertex AI's prediction endpoints take. */
export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

/** Where google-auth-library sends a service account's signed assertion, whatever its key file says. */
const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';

type GoogleAuthLibrary = typeof import('google-auth-library');

/** Request headers carrying an OAuth2 access token (and a quota project, when the credential names one). */
export type GoogleHeaders = () => Promise<Record<string, string>>;

/**
 * A transport that sends the token request to the key file's `token_uri`. Node's library always
 * posts to Google's public endpoint; Google's Python library and gcloud honour `token_uri`, which
 * is how a service account is pointed at a Private Service Connect endpoint. For an ordinary key
 * file the two are the same URL and nothing changes.
 */
function tokenUriTransport(lib: GoogleAuthLibrary, tokenUri: string): InstanceType<typeof lib.gaxios.Gaxios> {
  const transport = new lib.gaxios.Gaxios();
  transport.interceptors.request.add({
    resolved: async (opts) => {
      if (String(opts.url) === GOOGLE_TOKEN_URL) opts.url = new URL(tokenUri);
      return opts;
    },
  });
  return transport;
}

/** The key file, read at first use (a bridge whose file is missing still starts, and answers 503). */
async function fromFile(lib: GoogleAuthLibrary, file: string): Promise<GoogleAuth> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new Error(`credentialsFile ${file} cannot be read (${code})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text, and the text holds a private key: say only what is wrong.
    throw new Error(`credentialsFile ${file} is not JSON`);
  }
  if (!isObject(json)) throw new Error(`credentialsFile ${file} is not a JSON object`);
  const tokenUri =
    json.type === 'service_account' && typeof json.token_uri === 'string' ? json.token_uri : null;
  return new lib.GoogleAuth({
    scopes: CLOUD_PLATFORM_SCOPE,
    credentials: json as JWTInput,
    ...(tokenUri && tokenUri !== GOOGLE_TOKEN_URL
      ? { clientOptions: { transporter: tokenUriTransport(lib, tokenUri) } }
      : {}),
  });
}

/**
 * OAuth2 access-token headers from google-auth-library: the instance's `credentialsFile` (a
 * service-account key, a workload identity federation config, an authorized-user file), or else
 * application default credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file, the
 * metadata server on GCE, GKE workload identity and Cloud Run). The library caches the token and
 * fetches a new one before it expires; one GoogleAuth per instance keeps that cache.
 */
export function googleHeaders(credentialsFile: string | undefined): GoogleHeaders {
  let auth: Promise<GoogleAuth> | undefined;
  const build = async (): Promise<GoogleAuth> => {
    // The library (about 2 MB of heap) is loaded on first use, by bridges with Vertex instances only.
    const lib = await commonJs(import('google-auth-library'));
    return credentialsFile
      ? fromFile(lib, credentialsFile)
      : new lib.GoogleAuth({ scopes: CLOUD_PLATFORM_SCOPE });
  };
  return async () => {
    // One GoogleAuth for every request, built once; a file that could not be read is tried again.
    auth ??= build().catch((err: unknown) => {
      auth = undefined;
      throw err;
    });
    const headers = await (await auth).getRequestHeaders();
    const out: Record<string, string> = {};
    headers.forEach((value, name) => {
      out[name] = value;
    });
    if (!out.authorization) throw new Error('google-auth-library gave no access token');
    return out;
  };
}

/** Google's header naming the project a request's quota and billing go to. */
export const QUOTA_PROJECT = 'x-goog-user-project';

/**
 * An instance's Google credential for the Vertex families: the request headers it gives, and the
 * quota project it names (once a token was fetched). That project is the only one a request may
 * bill: a client's own `x-goog-user-project` would bill another project with the instance's token,
 * so `upstreamHeaders` drops it and puts the credential's in its place.
 */
export function instanceCredentials(credentialsFile: string | undefined): {
  headers: GoogleHeaders;
  upstreamHeaders(client: Readonly<Record<string, string | string[]>>): Record<string, string | string[]>;
} {
  const google = googleHeaders(credentialsFile);
  let quotaProject: string | undefined;
  return {
    headers: async () => {
      const headers = await google();
      quotaProject = headers[QUOTA_PROJECT];
      return headers;
    },
    upstreamHeaders: (client) => {
      const { [QUOTA_PROJECT]: _asked, ...rest } = client;
      return quotaProject ? { ...rest, [QUOTA_PROJECT]: quotaProject } : rest;
    },
  };
}
