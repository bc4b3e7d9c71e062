export type Role = 'admin' | 'member';

export interface User {
  id: string;
  email: string;
  name: string | null;
  team: string | null;
  role: Role;
  createdAt: string;
  /**
   * When the identity provider deactivated or deleted the user (SCIM, docs/sso.md); absent or null:
   * active. A deactivated user's keys are refused even before they are revoked.
   */
  deactivatedAt?: string | null;
}

/** A bridge key as the API shows it: never the key itself after creation. */
export interface KeyInfo {
  id: string;
  userId: string;
  name: string | null;
  /** The first characters of the key, enough to recognise it in a list. */
  prefix: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
  /**
   * Minted by a device sign-in (the extension's browser sign-in or `aibridge login`): its holder may
   * push its expiry forward (`POST /api/v1/auth/device/renew`). Absent on other keys.
   */
  renewable?: true;
  /**
   * A device key's renewals push its expiry no further than this (AIBRIDGE_DEVICE_KEY_MAX_DAYS after
   * the sign-in through the identity provider it descends from); once `expiresAt` has reached it,
   * only a new sign-in gives a key past it. Absent: no such bound (or a key minted before it).
   */
  renewableUntil?: string;
}

/**
 * A provider instance the bridge serves, as any member may see it: its name (the route prefix
 * `/<name>`) and its family (`anthropic`, `gemini`, …). Never its upstream URL or credentials.
 */
export interface ProviderInstanceInfo {
  name: string;
  type: string;
}

/** The answer to `GET /api/v1/me`: who the key belongs to, the key, and what the bridge serves. */
export interface Me {
  user: User;
  key: KeyInfo;
  /**
   * Every provider instance the bridge mounts, in the configured order (clients pick their routes
   * from it). Always in the answer; optional for clients that hold a `Me` built otherwise (the admin
   * page's session) or read a bridge older than the list.
   */
  providers?: ProviderInstanceInfo[];
}

/** The answer to `POST /api/v1/users/:email/keys`: the only time `key` is shown. */
export interface CreatedKey {
  id: string;
  key: string;
  prefix: string;
  expiresAt: string | null;
}
