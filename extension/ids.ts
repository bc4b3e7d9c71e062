/**
 * Every command, view and setting the extension contributes, as package.json names them. A test
 * keeps this file and package.json's `contributes` in step.
 */
export const COMMANDS = {
  signIn: 'aibridge.signIn',
  signOut: 'aibridge.signOut',
  configureCodex: 'aibridge.configureCodex',
  showAudit: 'aibridge.showAudit',
  refresh: 'aibridge.refresh',
  showToolCallsOnly: 'aibridge.showToolCallsOnly',
  showAllInterceptions: 'aibridge.showAllInterceptions',
  openInterception: 'aibridge.openInterception',
  showDiagnostics: 'aibridge.showDiagnostics',
} as const;

export type CommandId = (typeof COMMANDS)[keyof typeof COMMANDS];

export const VIEW_CONTAINER = 'aibridge';
export const VIEWS = { interceptions: 'aibridge.interceptions' } as const;

export const SETTINGS = {
  statusBarPeriod: 'aibridge.statusBar.period',
  terminalEnv: 'aibridge.terminalEnv',
} as const;

/** Context keys the extension sets for `when` clauses. */
export const CONTEXT = {
  signedIn: 'aibridge.signedIn',
  toolCallsOnly: 'aibridge.toolCallsOnly',
} as const;

/** The URI handler's path: `<scheme>://aibridge.ai-bridge/signin?url=...&key=...`. */
export const SIGN_IN_URI_PATH = '/signin';

/** Where the key is kept (SecretStorage) and the URL (global state; it is not a secret). */
export const STORAGE = {
  key: 'aibridge.key',
  url: 'aibridge.url',
  /** A fingerprint of the env key the user signed out of, so a provisioned workspace does not sign them in again. */
  declinedEnvKey: 'aibridge.declinedEnvKey',
} as const;
