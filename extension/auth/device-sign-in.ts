import type { Fetch } from '../api/bridge-client';

/** RFC 8628 §3.4. */
const DEVICE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';

/** What `POST /api/v1/auth/device/code` answered: the browser goes to `verificationUri`. */
export interface DeviceGrant {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  /** Seconds between polls; `slow_down` adds 5. */
  interval: number;
  /** When the code stops being accepted (ms since the epoch). */
  expiresAt: number;
}

export interface DeviceKey {
  key: string;
  keyId: string;
  expiresAt: string | null;
}

/** Why a browser sign-in ended without a key; `code` is the RFC 8628 error or one of ours. */
export class DeviceSignInError extends Error {
  constructor(
    readonly code:
      | 'access_denied'
      | 'expired_token'
      | 'invalid_grant'
      | 'unreachable'
      | 'refused'
      | 'cancelled',
    message: string,
  ) {
    super(message);
    this.name = 'DeviceSignInError';
  }
}

/**
 * A wait that something else may cut short: the URI handler wakes the poll loop the moment the
 * browser comes back, instead of at the next interval.
 */
export class Waker {
  private pending: (() => void) | undefined;
  private woken = false;

  wake(): void {
    this.woken = true;
    this.pending?.();
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.pending = undefined;
        this.woken = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.pending = done;
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

async function post(
  fetchImpl: Fetch,
  url: string,
  fields: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  let res: Response;
  try {
    res = await fetchImpl(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams(fields).toString(),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    throw new DeviceSignInError(
      'unreachable',
      `Cannot reach the bridge (${cause ?? (err as Error).message}).`,
    );
  }
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  return { status: res.status, body };
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * Starts a device sign-in (docs/sso.md): the bridge answers with the page the browser opens and,
 * after the user approves there, sends the browser on to `redirectUri` (the editor's own URI
 * handler, made reachable with `vscode.env.asExternalUri`). The key itself never travels through
 * the browser: only this device, holding the device code, can collect it.
 */
export async function startDeviceSignIn(
  bridgeUrl: string,
  deviceName: string,
  redirectUri: string,
  fetchImpl: Fetch = (u, i) => fetch(u, i),
  now: () => number = Date.now,
): Promise<DeviceGrant> {
  const r = await post(fetchImpl, `${bridgeUrl}/api/v1/auth/device/code`, {
    device_name: deviceName,
    redirect_uri: redirectUri,
  });
  const deviceCode = text(r.body.device_code);
  const userCode = text(r.body.user_code);
  const page = text(r.body.verification_uri_complete);
  if (r.status !== 200 || !deviceCode || !userCode || !page) {
    const why =
      text(r.body.error_description) ?? text((r.body.error as { message?: string } | undefined)?.message);
    throw new DeviceSignInError(
      'refused',
      `The bridge did not start a sign-in (${r.status}${why ? `: ${why}` : ''}).`,
    );
  }
  // Opened in the browser as it is: only a web page, never `file:`, `vscode:` or another scheme a
  // hostile bridge could name to reach something on this machine.
  if (!/^https?:\/\//i.test(page))
    throw new DeviceSignInError('refused', 'The bridge named a sign-in page that is not an http(s) address.');
  const interval = typeof r.body.interval === 'number' && r.body.interval > 0 ? r.body.interval : 5;
  const expiresIn = typeof r.body.expires_in === 'number' ? r.body.expires_in : 600;
  return { deviceCode, userCode, verificationUri: page, interval, expiresAt: now() + expiresIn * 1000 };
}

/**
 * Polls until the user approved (the key), denied, or the code expired; a `waker.wake()` polls at
 * once. RFC 8628 §3.5: `authorization_pending` keeps waiting, `slow_down` adds 5 s to the interval.
 */
export async function waitForDeviceKey(
  bridgeUrl: string,
  grant: DeviceGrant,
  opts: { waker?: Waker; signal?: AbortSignal; fetchImpl?: Fetch; now?: () => number } = {},
): Promise<DeviceKey> {
  const fetchImpl = opts.fetchImpl ?? ((u, i) => fetch(u, i));
  const now = opts.now ?? Date.now;
  const waker = opts.waker ?? new Waker();
  let interval = grant.interval;
  let first = true;
  for (;;) {
    if (opts.signal?.aborted) throw new DeviceSignInError('cancelled', 'Sign-in cancelled.');
    if (now() >= grant.expiresAt)
      throw new DeviceSignInError('expired_token', 'The sign-in took longer than 10 minutes; start again.');
    if (!first) await waker.sleep(interval * 1000, opts.signal);
    first = false;
    if (opts.signal?.aborted) throw new DeviceSignInError('cancelled', 'Sign-in cancelled.');
    let r: { status: number; body: Record<string, unknown> };
    try {
      r = await post(fetchImpl, `${bridgeUrl}/api/v1/auth/device/token`, {
        grant_type: DEVICE_GRANT_TYPE,
        device_code: grant.deviceCode,
      });
    } catch {
      continue; // A dropped poll is retried at the next interval; the code's own expiry bounds this.
    }
    const key = text(r.body.access_token);
    if (r.status === 200 && key) {
      return {
        key,
        keyId: text(r.body.key_id) ?? '',
        expiresAt: text(r.body.expires_at) ?? null,
      };
    }
    const error = text(r.body.error);
    if (error === 'authorization_pending') continue;
    if (error === 'slow_down') {
      interval += 5;
      continue;
    }
    if (error === 'access_denied')
      throw new DeviceSignInError('access_denied', 'The sign-in was denied in the browser.');
    if (error === 'expired_token')
      throw new DeviceSignInError('expired_token', 'The sign-in took longer than 10 minutes; start again.');
    throw new DeviceSignInError(
      'invalid_grant',
      text(r.body.error_description) ?? `The bridge refused the sign-in (${r.status}).`,
    );
  }
}
