/** `GET /api/v1/auth/config`: how the admin page's sign-in looks, asked before anyone is signed in. */
export interface AuthConfig {
  /** Single sign-on, when AIBRIDGE_OIDC_ISSUER is set; null otherwise. */
  sso: { displayName: string; loginUrl: string } | null;
  /** Whether the page offers the bridge-key form (AIBRIDGE_ADMIN_KEY_SIGNIN). */
  keySignIn: boolean;
}
