/**
 * Every command, view and setting the extension contributes, as package.json names them. A test
 * keeps this file and package.json's `contributes` in step.
 */
export const COMMANDS = {
  signIn: 'aibridge.signIn',
  signInWithKey: 'aibridge.signInWithKey',
  signOut: 'aibridge.signOut',
  configureCodex: 'aibridge.configureCodex',
  showAudit: 'aibridge.showAudit',
  refresh: 'aibridge.refresh',
  showToolCallsOnly: 'aibridge.showToolCallsOnly',
  showAllInterceptions: 'aibridge.showAllInterceptions',
  openInterception: 'aibridge.openInterception',
  showDiagnostics: 'aibridge.showDiagnostics',
  setUpContinue: 'aibridge.setUpContinue',
  setUpRooCode: 'aibridge.setUpRooCode',
  setUpKiloCode: 'aibridge.setUpKiloCode',
} as const;

export type CommandId = (typeof COMMANDS)[keyof typeof COMMANDS];

export const VIEW_CONTAINER = 'aibridge';
export const VIEWS = { interceptions: 'aibridge.interceptions' } as const;

export const SETTINGS = {
  statusBarPeriod: 'aibridge.statusBar.period',
  terminalEnv: 'aibridge.terminalEnv',
  url: 'aibridge.url',
  prepareAgents: 'aibridge.prepareAgents',
  ideClients: 'aibridge.ideClients',
  chatModels: 'aibridge.chatModels',
  mcpGateway: 'aibridge.mcpGateway',
  byok: 'aibridge.byok',
} as const;

/** Context keys the extension sets for `when` clauses. */
export const CONTEXT = {
  signedIn: 'aibridge.signedIn',
  toolCallsOnly: 'aibridge.toolCallsOnly',
} as const;

/** The authentication provider's id (package.json `contributes.authentication`), for the Accounts menu and other extensions. */
export const AUTH_PROVIDER_ID = 'aibridge';
export const AUTH_PROVIDER_LABEL = 'AI Bridge';

/** The MCP server definition provider's id and label (package.json `contributes.mcpServerDefinitionProviders`). */
export const MCP_PROVIDER_ID = 'aibridge';
export const MCP_PROVIDER_LABEL = 'AI Bridge';

/** The extension's id, the authority of its URIs. */
export const EXTENSION_ID = 'aibridge.ai-bridge';

/** The URI handler's path: `<scheme>://aibridge.ai-bridge/signin?url=...&key=...`. */
export const SIGN_IN_URI_PATH = '/signin';

/** Where the browser sign-in returns: `<scheme>://aibridge.ai-bridge/auth-complete?nonce=...` (no secret in it). */
export const AUTH_COMPLETE_URI_PATH = '/auth-complete';

/**
 * Where a sign-in is kept. `credentials` (SecretStorage) holds the bridge's URL and its key as one
 * JSON value, so a window that follows another's sign-in reads both from one write and never pairs a
 * new key with the URL before it. `url` (global state) is the last bridge signed in to, shown as the
 * default at the next sign-in. `key` is where earlier versions kept the key alone (the URL only in
 * global state): read once, moved into `credentials`, and deleted.
 */
export const STORAGE = {
  credentials: 'aibridge.credentials',
  key: 'aibridge.key',
  url: 'aibridge.url',
  /** A fingerprint of the env key the user signed out of, so a provisioned workspace does not sign them in again. */
  declinedEnvKey: 'aibridge.declinedEnvKey',
  /** Bridges over plain http to another machine the user agreed to send their key to (asked once each). */
  insecureAccepted: 'aibridge.insecureAccepted',
  /** Device keys whose holder was told their renewals have ended (the last few): told once, in any window. */
  renewalEndedTold: 'aibridge.renewalEndedTold',
} as const;
