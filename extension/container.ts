import * as vscode from 'vscode';
import { geminiInstance } from '../shared/gemini-instance';
import type { Period } from '../shared/spend';
import { applyAgentSettings } from './agents/apply-settings';
import {
  type AgentsReport,
  type IdeClients,
  prepareAgents,
  prepareCodex,
  prepareIdeClientsOnly,
  undoAgents,
  undoIdeClientsOnly,
} from './agents/prepare-agents';
import { BridgeClient, fetchAuthConfig, type Me } from './api/bridge-client';
import { DetailPanel } from './audit/detail-panel';
import { AuditTree } from './audit/tree-provider';
import { BridgeAuthProvider } from './auth/auth-provider';
import { BrowserSignIn } from './auth/browser-sign-in-ui';
import { renew, renewalDue, renewalsEnded } from './auth/renewal';
import { Session, type SignedIn } from './auth/session';
import {
  type Credentials,
  credentialsFromEnv,
  defaultBridgeUrl,
  isInsecureRemote,
  movedBridge,
} from './auth/sign-in';
import { signInFailure } from './auth/sign-in-failure';
import {
  confirmInsecureBridge,
  confirmInsecureLink,
  confirmLink,
  promptKey,
  promptUrl,
  verifyWithProgress,
} from './auth/sign-in-ui';
import { linkAction } from './auth/uri-link';
import { CODEX_PROVIDER } from './codex/codex-config';
import { codexConfigPath } from './codex/codex-file';
import { Emitter } from './emitter';
import { plainNotificationText } from './format';
import {
  AUTH_PROVIDER_ID,
  AUTH_PROVIDER_LABEL,
  COMMANDS,
  CONTEXT,
  type CommandId,
  SETTINGS,
  STORAGE,
  VIEW_CONTAINER,
} from './ids';
import { LiveSocket } from './live/live-socket';
import type { ConnectionState } from './live/machine';
import { ChatModelList } from './lm/chat-models';
import { DEFAULT_CHAT_MODELS, registerBridgeChatModels } from './lm/lm-provider';
import { oneLineLog } from './log-lines';
import { registerGatewayDefinition } from './mcp/gateway-definition';
import { GatewayProbe } from './mcp/gateway-probe';
import { BridgeModel } from './model/bridge-model';
import { policyNotice } from './status/notices';
import { StatusBar } from './status/status-bar';
import { computeTerminalEnv, withOwnCredential } from './terminal/env';
import { applyTerminalEnv, clearTerminalEnv } from './terminal/terminal-env';

/** How many recent interceptions the audit view loads on start and after a reconnect. */
const HISTORY_LIMIT = 100;
/** The spend seed is fetched again this long after one that raced with live events. */
const RESEED_MS = 1500;
/** How often to check whether the status bar's period rolled over (midnight, a new week or month). */
const PERIOD_CHECK_MS = 60_000;
/** How often a device key's expiry is looked at (it renews days before it ends: auth/renewal.ts). */
const RENEWAL_CHECK_MS = 3_600_000;

const PERIODS: readonly Period[] = ['day', 'week', 'month'];

/** The IDE assistants that keep the key in a file of theirs (docs/extension.md). */
const IDE_CLIENT_IDS = ['continue', 'rooCode', 'kiloCode'] as const;
type IdeClientId = (typeof IDE_CLIENT_IDS)[number];
const IDE_CLIENT_NAMES: Record<IdeClientId, string> = {
  continue: 'Continue',
  rooCode: 'Roo Code',
  kiloCode: 'Kilo Code',
};

/**
 * Builds every service once and owns them: each is pushed into `disposables` when created and
 * disposed with the extension. Auth knows nothing of the socket; the socket only turns messages into
 * events; the model holds the state; the status bar, tree and webview render it.
 */
export class Container implements vscode.Disposable {
  private readonly disposables: vscode.Disposable[] = [];
  readonly log: vscode.LogOutputChannel;
  readonly model = new BridgeModel();
  readonly session: Session;
  private readonly tree: AuditTree;
  private readonly detail: DetailPanel;
  private live: LiveSocket | undefined;
  private client: BridgeClient | undefined;
  /** The credentials the live services run with; a change of user only restarts nothing. */
  private running: Credentials | undefined;
  /** The models VS Code's chat offers: asked of the bridge again at each sign-in. */
  private readonly chatModelList = new ChatModelList({
    fallback: () => this.chatModels(),
    onError: (err) => this.log.warn(`chat models: the bridge's list could not be read: ${String(err)}`),
  });
  private reseedTimer: NodeJS.Timeout | undefined;
  private readonly periodTimer: NodeJS.Timeout;
  private readonly renewalTimer: NodeJS.Timeout;
  private readonly browser = new BrowserSignIn();
  /** A sign-in in progress (command, Accounts menu, another extension): the others join it. */
  private signingIn: Promise<SignedIn | undefined> | undefined;
  /** Fires when VS Code's MCP server list changes: sign-in, sign-out, a new key, the setting. */
  private readonly mcpChanged = new Emitter<void>();
  /** Whether the bridge signed in to offers the MCP gateway (asked at sign-in, again once reached if not found). */
  private readonly gateway = new GatewayProbe(() => this.mcpChanged.fire());
  /** Activation time in ms (bundle evaluation to the end of activate), shown by Show Diagnostics. */
  activationMs = 0;

  constructor(private readonly context: vscode.ExtensionContext) {
    this.log = this.track(oneLineLog(vscode.window.createOutputChannel('AI Bridge', { log: true })));
    this.session = new Session(context.secrets, context.globalState, (c) =>
      new BridgeClient(c.url, c.key).me(),
    );
    this.track(this.session);
    this.track(this.model);
    this.track(new StatusBar(this.model, () => this.running?.url ?? null));
    this.tree = this.track(new AuditTree(this.model));
    this.detail = this.track(new DetailPanel(this.model));
    this.track(this.session.onDidChange((s) => this.onSession(s)));
    this.track(this.model.onDidChange((c) => c === 'policy' && this.notifyPolicy()));
    // VS Code's chat (1.104+): the signed-in user's models from the bridge in the model picker.
    this.track(this.chatModelList);
    this.optional('VS Code chat models', () =>
      registerBridgeChatModels({ credentials: () => this.running, models: this.chatModelList }),
    );
    this.track(vscode.workspace.onDidChangeConfiguration((e) => this.onConfig(e)));
    this.track(vscode.workspace.onDidGrantWorkspaceTrust(() => void this.prepareAgents()));
    this.track(vscode.workspace.onDidChangeWorkspaceFolders(() => void this.prepareAgents()));
    this.track(vscode.window.registerUriHandler({ handleUri: (uri) => this.handleUri(uri) }));
    const accounts = this.track(
      new BridgeAuthProvider(
        this.session,
        () => this.signInInteractive(),
        () => this.signOutCommand(),
      ),
    );
    this.track(
      vscode.authentication.registerAuthenticationProvider(AUTH_PROVIDER_ID, AUTH_PROVIDER_LABEL, accounts, {
        supportsMultipleAccounts: false,
      }),
    );
    this.track(this.mcpChanged);
    this.optional('MCP server definition', () =>
      registerGatewayDefinition(
        () => (this.gateway.found && this.mcpGatewayOn() ? this.running : undefined),
        this.mcpChanged.event,
      ),
    );
    this.periodTimer = setInterval(() => {
      if (this.model.spendExpired(Date.now())) void this.seedSpend();
    }, PERIOD_CHECK_MS);
    this.renewalTimer = setInterval(() => void this.renewIfDue(), RENEWAL_CHECK_MS);
    this.registerCommands();
  }

  /** Restores the stored sign-in, or signs in from the environment of a provisioned workspace. */
  async start(): Promise<void> {
    const restored = await this.session.restore();
    this.log.info(`stored sign-in: ${restored}`);
    if (restored === 'rejected') {
      void this.askToSignInAgain('The bridge no longer accepts the stored key.');
      return;
    }
    if (restored !== 'none') {
      await this.renewIfDue();
      return;
    }
    const fromEnv = credentialsFromEnv(process.env);
    if (!fromEnv) {
      const url = this.configuredUrl();
      if (url) void this.offerSignIn(url);
      return;
    }
    if (!fromEnv.ok) {
      void vscode.window.showWarningMessage(plainNotificationText(`AI Bridge: ${fromEnv.message}`));
      return;
    }
    if (this.session.declinedEnvKey(fromEnv.value.key)) {
      this.log.info('AIBRIDGE_KEY is set but the user signed out of it before; not signing in');
      return;
    }
    if (isInsecureRemote(fromEnv.value.url)) {
      // Provisioned by the environment (a devcontainer's network, say): said, not asked.
      this.log.warn(
        `AIBRIDGE_URL ${fromEnv.value.url} is plain http to another machine: the key travels unencrypted`,
      );
      void vscode.window.showWarningMessage(
        plainNotificationText(
          `AI Bridge: AIBRIDGE_URL (${fromEnv.value.url}) is plain http to another machine: your key, prompts and code travel to it unencrypted.`,
        ),
      );
    }
    try {
      const me = await this.session.verify(fromEnv.value);
      await this.session.signIn(fromEnv.value, me);
      this.log.info(`signed in from AIBRIDGE_URL/AIBRIDGE_KEY as ${me.user.email}`);
    } catch (err) {
      void vscode.window.showWarningMessage(
        plainNotificationText(
          `AI Bridge: could not sign in from AIBRIDGE_URL/AIBRIDGE_KEY. ${signInFailure(err, fromEnv.value.url)}`,
        ),
      );
    }
  }

  /**
   * Registers something only newer VS Code versions offer. An API can exist and still refuse the
   * call (a proposed API in that version): that must cost the feature, never the activation.
   */
  private optional(what: string, register: () => vscode.Disposable | undefined): void {
    try {
      const d = register();
      if (d) this.track(d);
    } catch (err) {
      this.log.info(`${what}: not available in this VS Code (${(err as Error).message})`);
    }
  }

  private track<T extends { dispose(): unknown }>(d: T): T {
    this.disposables.push(d as vscode.Disposable);
    return d;
  }

  private registerCommands(): void {
    const handlers: Record<CommandId, (...args: unknown[]) => unknown> = {
      [COMMANDS.signIn]: () => this.signInInteractive(),
      [COMMANDS.signInWithKey]: () => this.signInWithKeyCommand(),
      [COMMANDS.signOut]: () => this.signOutCommand(),
      [COMMANDS.configureCodex]: () => this.configureCodex(),
      [COMMANDS.showAudit]: () =>
        vscode.commands.executeCommand(`workbench.view.extension.${VIEW_CONTAINER}`),
      [COMMANDS.refresh]: () => this.refresh(),
      [COMMANDS.showToolCallsOnly]: () => this.tree.setToolCallsOnly(true),
      [COMMANDS.showAllInterceptions]: () => this.tree.setToolCallsOnly(false),
      [COMMANDS.openInterception]: (id) => {
        if (typeof id !== 'string') return;
        const client = this.client;
        return this.detail.show(id, client ? (x) => client.interception(x) : undefined);
      },
      [COMMANDS.showDiagnostics]: () => this.showDiagnostics(),
      [COMMANDS.setUpContinue]: () => this.setUpIdeClient('continue'),
      [COMMANDS.setUpRooCode]: () => this.setUpIdeClient('rooCode'),
      [COMMANDS.setUpKiloCode]: () => this.setUpIdeClient('kiloCode'),
    };
    for (const [id, run] of Object.entries(handlers)) {
      this.track(vscode.commands.registerCommand(id, run));
    }
  }

  /** The bridge an admin named (setting `aibridge.url`, or AIBRIDGE_URL from a workspace template). */
  private configuredUrl(): string | undefined {
    return defaultBridgeUrl(
      vscode.workspace.getConfiguration().get<string>(SETTINGS.url),
      process.env.AIBRIDGE_URL,
    );
  }

  private async offerSignIn(url: string): Promise<void> {
    const pick = await vscode.window.showInformationMessage(
      // The URL may come from a workspace's settings: no link in it.
      plainNotificationText(`AI Bridge: sign in to ${url} so that coding agents in your terminals use it.`),
      'Sign In',
    );
    // The offer stays on screen after a sign-in from elsewhere (status bar, Accounts menu).
    if (pick === 'Sign In' && !this.session.current) await this.signInInteractive();
  }

  /**
   * Sign In: through the browser when the bridge has single sign-on (no key is ever shown or
   * typed), else with a key. Concurrent calls (command, Accounts menu) share one sign-in.
   */
  private signInInteractive(to?: string): Promise<SignedIn | undefined> {
    this.signingIn ??= this.runSignIn(to).finally(() => {
      this.signingIn = undefined;
    });
    return this.signingIn;
  }

  /** `to`: this bridge rather than the one signed in to (the setting moved to another one). */
  private async runSignIn(to?: string): Promise<SignedIn | undefined> {
    const url =
      to ??
      this.session.current?.url ??
      this.configuredUrl() ??
      (await promptUrl(this.context.globalState.get<string>(STORAGE.url)));
    if (!url || !(await this.acceptInsecure(url))) return undefined;
    let sso: string | undefined;
    try {
      sso = (await fetchAuthConfig(url)).sso?.displayName;
    } catch (err) {
      void vscode.window.showErrorMessage(`AI Bridge: ${signInFailure(err, url)}`);
      return undefined;
    }
    if (sso === undefined) return this.signInWithKey(url);
    try {
      const got = await this.browser.run(url, sso);
      if (!got) return undefined;
      return await this.signInWith({ url, key: got.key });
    } catch (err) {
      const why = signInFailure(err, url);
      const again = await vscode.window.showErrorMessage(
        plainNotificationText(`AI Bridge: sign-in failed. ${why}`),
        'Try Again',
      );
      if (again === 'Try Again') return this.runSignIn(to);
      return undefined;
    }
  }

  /** Break-glass: a key an admin issued. */
  private async signInWithKeyCommand(): Promise<void> {
    const url = await promptUrl(
      this.session.current?.url ?? this.configuredUrl() ?? this.context.globalState.get<string>(STORAGE.url),
    );
    if (url && (await this.acceptInsecure(url))) await this.signInWithKey(url);
  }

  /**
   * Plain http to another machine: the user is asked once per bridge before a key is sent there
   * (a link asks on its own: confirmInsecureLink); what they accepted is remembered.
   */
  private async acceptInsecure(url: string): Promise<boolean> {
    if (!isInsecureRemote(url)) return true;
    const accepted = this.context.globalState.get<string[]>(STORAGE.insecureAccepted) ?? [];
    if (accepted.includes(url)) return true;
    if (!(await confirmInsecureBridge(url))) return false;
    await this.context.globalState.update(STORAGE.insecureAccepted, [...accepted, url].slice(-20));
    return true;
  }

  private async signInWithKey(url: string): Promise<SignedIn | undefined> {
    const key = await promptKey();
    if (!key) return undefined;
    return this.signInWith({ url, key });
  }

  /** Checks the credentials, asks `confirm` (when given) with whose they are, and signs in. */
  private async signInWith(
    c: Credentials,
    confirm?: (me: Me) => Promise<boolean>,
  ): Promise<SignedIn | undefined> {
    const me = await verifyWithProgress(c, (x) => this.session.verify(x));
    if (!me) return undefined;
    if (confirm && !(await confirm(me))) return undefined;
    await this.session.signIn(c, me);
    void vscode.window.showInformationMessage(
      plainNotificationText(`AI Bridge: signed in as ${me.user.email}.`),
    );
    return this.session.current;
  }

  private async handleUri(uri: vscode.Uri): Promise<void> {
    const link = linkAction(uri.path, uri.query);
    switch (link.type) {
      case 'authComplete':
        if (!this.browser.complete(link.query))
          this.log.info('auth-complete for no sign-in in progress: ignored');
        return;
      case 'refuse':
        void vscode.window.showWarningMessage(link.message);
        return;
      case 'signIn': {
        // Whose key it is first, then the question, naming the account (confirmLink); over plain
        // http to another machine the user is asked before the key is sent even to be checked.
        if (!(await confirmInsecureLink(link.credentials))) return;
        await this.signInWith(link.credentials, (me) => {
          const s = this.session.current;
          return confirmLink(
            link.credentials,
            me,
            s ? { url: s.url, email: s.user?.email ?? null } : undefined,
            s?.url ?? this.configuredUrl(),
          );
        });
        return;
      }
    }
  }

  /** Signs out; a key this device's sign-in minted is revoked on the bridge too (it is no one else's). */
  private async signOutCommand(): Promise<void> {
    const s = this.session.current;
    if (s?.keyInfo?.renewable) {
      try {
        await new BridgeClient(s.url, s.key).revokeKey(s.keyInfo.id);
        this.log.info(`device key ${s.keyInfo.prefix} revoked`);
      } catch (err) {
        // Offline: the key still ends at its expiry; signing out here must not wait for the bridge.
        this.log.warn(`revoking the device key: ${(err as Error).message}`);
      }
    }
    const env = credentialsFromEnv(process.env);
    await this.session.signOut(env?.ok ? env.value.key : undefined);
    void vscode.window.showInformationMessage('AI Bridge: signed out.');
  }

  /** The bridge refused the key over the live socket (revoked, expired, user deactivated): signed out at once. */
  private async signedOutByBridge(why: string): Promise<void> {
    const env = credentialsFromEnv(process.env);
    const refused = this.session.current?.key;
    // The environment's key is declined only when it is the one refused: a device key revoked must
    // not stop a provisioned workspace's own key from signing in next time.
    await this.session.signOut(env?.ok && env.value.key === refused ? env.value.key : undefined);
    this.log.warn(`signed out by the bridge: ${why}`);
    // `why` may be the bridge's own words (a refused renewal): no link in them.
    const pick = await vscode.window.showWarningMessage(
      plainNotificationText(`AI Bridge: signed out (${why}).`),
      'Sign In',
    );
    if (pick === 'Sign In') await this.signInInteractive();
  }

  private async renewIfDue(): Promise<void> {
    const s = this.session.current;
    if (!s?.keyInfo || !renewalDue(s.keyInfo, Date.now())) return;
    const out = await renew(() => new BridgeClient(s.url, s.key).renewKey());
    if (this.session.current?.key !== s.key) return;
    if (out.type === 'renewed') {
      this.session.noteKey(out.key);
      this.log.info(`device key renewed until ${out.key.expiresAt}`);
      if (renewalsEnded(out.key)) void this.tellRenewalEnded(out.key.id, out.key.expiresAt!);
    } else if (out.type === 'refused') {
      await this.signedOutByBridge(`the key could not be renewed: ${out.message}`);
    } else {
      this.log.warn(`device key renewal: ${out.message}; trying again within the hour`);
    }
  }

  /** Starts or stops everything that follows the sign-in. */
  private onSession(s: SignedIn | undefined): void {
    if (s && this.running && s.url === this.running.url && s.key === this.running.key) {
      // Signed in again with the same key after the bridge refused it: try once more.
      if (this.live?.state.status === 'error') this.live.start();
      // What the bridge serves may have changed (or been learnt, after an offline start).
      this.applyTerminalEnv();
      void this.prepareAgents();
      return;
    }
    this.stopLive();
    this.model.reset();
    this.detail.close();
    void vscode.commands.executeCommand('setContext', CONTEXT.signedIn, s !== undefined);
    if (!s) {
      this.running = undefined;
      this.chatModelList.refresh();
      clearTerminalEnv(this.context.environmentVariableCollection);
      this.log.info('signed out: terminal variables removed');
      this.gateway.follow(undefined);
      this.mcpChanged.fire();
      // The IDE clients' files hold the key: taken back whatever `aibridge.prepareAgents` says.
      const undo =
        vscode.workspace.getConfiguration().get<boolean>(SETTINGS.prepareAgents) !== false
          ? undoAgents()
          : undoIdeClientsOnly();
      void undo.then(async (r) => {
        if (r.changed.length > 0) this.log.info(`agents: removed the bridge from ${r.changed.join(', ')}`);
        for (const p of [...r.problems, ...(await applyAgentSettings(r))]) this.log.warn(`agents: ${p}`);
      });
      return;
    }
    this.running = { url: s.url, key: s.key };
    this.chatModelList.refresh();
    this.gateway.follow(s.url);
    this.mcpChanged.fire();
    if (s.user) this.model.setUser(s.user);
    this.applyTerminalEnv();
    void this.prepareAgents();
    this.client = new BridgeClient(s.url, s.key);
    const live = new LiveSocket({ url: s.url, key: s.key, query: 'user=me' });
    live.onState((state) => this.onConnection(state));
    live.onEvent((e) => this.model.apply(e));
    this.live = live;
    live.start();
  }

  private stopLive(): void {
    clearTimeout(this.reseedTimer);
    this.live?.dispose();
    this.live = undefined;
    this.client = undefined;
  }

  private onConnection(state: ConnectionState): void {
    this.model.setConnection(state);
    this.log.info(`live: ${state.status}${state.status === 'reconnecting' ? ` (${state.lastError})` : ''}`);
    if (state.status === 'live') {
      // Whatever happened while disconnected is in the totals and the history, not in the events.
      void this.seedSpend();
      void this.seedHistory();
      void this.learnSession();
      // Not found at sign-in (the bridge unreachable then): asked again, and the agents get it now.
      void this.gateway.reached().then((found) => {
        if (found) void this.prepareAgents();
      });
    } else if (state.status === 'error' && state.needsSignIn) {
      void this.signedOutByBridge(state.message);
    }
  }

  /** A rule denied a tool call the model asked this user's agent to run: say what and why, once. */
  private notifyPolicy(): void {
    const p = this.model.lastPolicy;
    if (p?.action !== 'deny') return;
    const what = p.summary.trim() || p.tool;
    this.log.warn(`blocked ${p.tool}: ${what} (rule ${p.rule}, interception ${p.interceptionId})`);
    void vscode.window.showWarningMessage(policyNotice(p), 'Show in Audit View').then((pick) => {
      if (pick) void vscode.commands.executeCommand(COMMANDS.openInterception, p.interceptionId);
    });
  }

  /** Once per key, in any window: the sign-in will run out, and why a new one is needed. */
  private async tellRenewalEnded(keyId: string, expiresAt: string): Promise<void> {
    const told = this.context.globalState.get<string[]>(STORAGE.renewalEndedTold) ?? [];
    if (told.includes(keyId)) return;
    await this.context.globalState.update(STORAGE.renewalEndedTold, [...told, keyId].slice(-20));
    const ends = new Date(expiresAt).toLocaleString();
    const pick = await vscode.window.showWarningMessage(
      `AI Bridge: your sign-in has reached the longest the bridge renews it and ends on ${ends}. Sign in again to keep working after that.`,
      'Sign In',
    );
    if (pick === 'Sign In') await this.signInInteractive();
  }

  private async askToSignInAgain(why: string): Promise<void> {
    const pick = await vscode.window.showWarningMessage(
      plainNotificationText(`AI Bridge: the bridge refused your key (${why}). Sign in again?`),
      'Sign In',
    );
    if (pick === 'Sign In') await this.signInInteractive();
  }

  private period(): Period {
    const p = vscode.workspace.getConfiguration().get<string>(SETTINGS.statusBarPeriod);
    return PERIODS.find((x) => x === p) ?? 'day';
  }

  private async seedSpend(): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.model.beginSeed();
    try {
      const usage = await client.usageMe(this.period());
      if (client !== this.client) return;
      if (this.model.seedSpend(usage)) {
        clearTimeout(this.reseedTimer);
        this.reseedTimer = setTimeout(() => void this.seedSpend(), RESEED_MS);
      }
    } catch (err) {
      this.log.warn(`usage/me: ${(err as Error).message}`);
    }
  }

  private async seedHistory(): Promise<void> {
    const client = this.client;
    if (!client) return;
    try {
      // The view is the signed-in user's own: with an admin's key, a read that names no user is
      // everyone's (and logged as an admin reading everyone's). Restored offline, the user is not
      // known yet when the live feed first connects: asked for first.
      const user = this.model.user ?? (await client.me()).user;
      if (client !== this.client) return;
      const page = await client.interceptions({ limit: HISTORY_LIMIT, user: user.id });
      if (client === this.client) this.model.seedHistory(page.items);
      // A bridge from before the MCP gateway answers 400 to `via`: nothing to show then.
      const calls = await client
        .gatewayCalls({ limit: HISTORY_LIMIT, user: user.id })
        .catch(() => ({ items: [] }));
      if (client === this.client) this.model.seedGatewayCalls(calls.items);
    } catch (err) {
      this.log.warn(`interceptions: ${(err as Error).message}`);
    }
  }

  /**
   * Restored offline, the extension did not learn who is signed in, the key's expiry or what the
   * bridge serves: asked once the bridge is reached; then the device key is renewed if due (it
   * would otherwise run out in an editor left open) and the terminal variables and agents that
   * depend on what it serves (Gemini CLI) are set up.
   */
  private async learnSession(): Promise<void> {
    const client = this.client;
    if (!client || !this.session.incomplete) return;
    try {
      const me = await client.me();
      if (client !== this.client) return;
      const providersNew = this.session.noteMe(me);
      await this.renewIfDue();
      if (providersNew && client === this.client) {
        this.applyTerminalEnv();
        void this.prepareAgents();
      }
    } catch (err) {
      this.log.warn(`me: ${(err as Error).message}`);
    }
  }

  private async refresh(): Promise<void> {
    this.live?.retryNow();
    await Promise.all([this.seedSpend(), this.seedHistory()]);
  }

  private applyTerminalEnv(): void {
    const c = this.running;
    if (!c) return;
    const computed = computeTerminalEnv(
      vscode.workspace.getConfiguration().get(SETTINGS.terminalEnv),
      c,
      this.session.current?.providers,
    );
    const env = this.byokOn() ? withOwnCredential(computed, c) : computed;
    for (const p of env.problems) {
      this.log.warn(p);
      void vscode.window.showWarningMessage(`AI Bridge: ${p}`);
    }
    applyTerminalEnv(
      this.context.environmentVariableCollection,
      env,
      `AI Bridge: routes coding agents through ${c.url} (${env.vars.map(([n]) => n).join(', ')})`,
    );
    this.log.info(`terminal variables set: ${env.vars.map(([n]) => n).join(', ')}`);
  }

  /**
   * `aibridge.url` changed while signed in to another bridge: Sign In would keep going to the old
   * one (it prefers the bridge signed in to), so the move is offered here. The old sign-in stays
   * until the new one succeeds.
   */
  private async offerMovedBridge(): Promise<void> {
    const s = this.session.current;
    const next = movedBridge(s?.url, vscode.workspace.getConfiguration().get<unknown>(SETTINGS.url));
    if (!s || !next) return;
    this.log.info(`aibridge.url now names ${next}; signed in to ${s.url}`);
    const pick = await vscode.window.showInformationMessage(
      plainNotificationText(
        `AI Bridge: the aibridge.url setting now names ${next}, but you are signed in to ${s.url}. Sign in to ${next}?`,
      ),
      'Sign In',
    );
    if (pick === 'Sign In' && this.session.current?.url === s.url) await this.signInInteractive(next);
  }

  private onConfig(e: vscode.ConfigurationChangeEvent): void {
    if (e.affectsConfiguration(SETTINGS.url)) void this.offerMovedBridge();
    if (e.affectsConfiguration(SETTINGS.terminalEnv)) this.applyTerminalEnv();
    if (e.affectsConfiguration(SETTINGS.byok)) {
      this.applyTerminalEnv();
      void this.prepareAgents();
    }
    if (e.affectsConfiguration(SETTINGS.statusBarPeriod)) void this.seedSpend();
    if (e.affectsConfiguration(SETTINGS.chatModels)) this.chatModelList.refresh();
    if (e.affectsConfiguration(SETTINGS.mcpGateway)) {
      this.mcpChanged.fire();
      void this.prepareAgents();
    }
  }

  /** VS Code's workspace trust is the user's decision; the agents get the same answer, and no more. */
  private trustedFolders(): string[] {
    return vscode.workspace.isTrusted
      ? (vscode.workspace.workspaceFolders ?? [])
          .filter((f) => f.uri.scheme === 'file')
          .map((f) => f.uri.fsPath)
      : [];
  }

  /**
   * Claude Code and Codex in a new terminal start at their prompt: onboarding done, Codex's
   * provider the bridge, the trusted folders trusted (docs/extension.md#agents-start-at-once).
   */
  private prepareAgents(only?: IdeClientId): Promise<AgentsReport> | undefined {
    const c = this.running;
    if (!c) return undefined;
    const wanted = only ? [only] : this.ideClientsSetting();
    // An IDE client's own command, or `aibridge.prepareAgents` off: the IDE clients asked for, only.
    const agentsToo =
      !only && vscode.workspace.getConfiguration().get<boolean>(SETTINGS.prepareAgents) !== false;
    if (!agentsToo && wanted.length === 0) return undefined;
    // Only a bridge that offers the gateway is registered; otherwise an earlier entry is removed.
    return this.gateway.has
      .then((has) => {
        const o = {
          url: c.url,
          trustedFolders: this.trustedFolders(),
          mcpGateway: has && this.mcpGatewayOn(),
          byok: this.byokOn(),
          gemini: geminiInstance(this.session.current?.providers) !== undefined,
          ...(wanted.length > 0 ? { ide: this.ideClients(c.key, wanted) } : {}),
        };
        return agentsToo ? prepareAgents(o) : prepareIdeClientsOnly(o);
      })
      .then(async (r) => {
        if (r.changed.length > 0) this.log.info(`agents prepared: ${r.changed.join(', ')}`);
        for (const p of [...r.problems, ...(await applyAgentSettings(r))]) this.log.warn(`agents: ${p}`);
        return r;
      });
  }

  /** `aibridge.byok`: the agents keep the user's own provider credential and send the bridge key beside it. */
  private byokOn(): boolean {
    return vscode.workspace.getConfiguration().get<boolean>(SETTINGS.byok) === true;
  }

  private mcpGatewayOn(): boolean {
    return vscode.workspace.getConfiguration().get<boolean>(SETTINGS.mcpGateway) !== false;
  }

  private chatModels(): readonly string[] {
    const v = vscode.workspace.getConfiguration().get<unknown>(SETTINGS.chatModels);
    const ids = Array.isArray(v)
      ? v.filter((x): x is string => typeof x === 'string' && x.trim() !== '')
      : [];
    return ids.length > 0 ? ids : DEFAULT_CHAT_MODELS;
  }

  /** The IDE assistants `aibridge.ideClients` asks to set up at sign-in (they hold the key in a file of theirs). */
  private ideClientsSetting(): IdeClientId[] {
    const v = vscode.workspace.getConfiguration().get<unknown>(SETTINGS.ideClients);
    return Array.isArray(v)
      ? v.filter((x): x is IdeClientId => IDE_CLIENT_IDS.includes(x as IdeClientId))
      : [];
  }

  private ideClients(key: string, wanted: readonly IdeClientId[]): IdeClients {
    const model = this.chatModels()[0] ?? DEFAULT_CHAT_MODELS[0] ?? 'claude-sonnet-4-5';
    return {
      key,
      ...(wanted.includes('continue') ? { continue: { anthropicModels: this.chatModels() } } : {}),
      ...(wanted.includes('rooCode') ? { rooCode: { model } } : {}),
      ...(wanted.includes('kiloCode') ? { kiloCode: { model } } : {}),
    };
  }

  /** "AI Bridge: Set Up Continue / Roo Code / Kilo Code": now, for the signed-in user. */
  private async setUpIdeClient(id: IdeClientId): Promise<void> {
    const done = this.prepareAgents(id);
    if (!done) {
      void vscode.window.showWarningMessage('AI Bridge: sign in first.');
      return;
    }
    const r = await done;
    if (r.problems.length > 0)
      void vscode.window.showErrorMessage(plainNotificationText(`AI Bridge: ${r.problems.join(' ')}`));
    else
      void vscode.window.showInformationMessage(
        `AI Bridge: ${IDE_CLIENT_NAMES[id]} now goes through the bridge (${r.changed.join(', ') || 'already set up'}). Sign-out undoes it.`,
      );
  }

  private async configureCodex(): Promise<void> {
    const c = this.running;
    if (!c) {
      void vscode.window.showWarningMessage('AI Bridge: sign in first, then configure Codex.');
      return;
    }
    const file = codexConfigPath();
    const add = 'Add Provider';
    const addDefault = 'Add and Make Default';
    const pick = await vscode.window.showInformationMessage(
      `Add an "${CODEX_PROVIDER}" model provider to ${file}?`,
      {
        modal: true,
        detail: `Codex will reach ${c.url}/openai/v1 with the key from OPENAI_API_KEY (set in new terminals); "codex --profile ${CODEX_PROVIDER}" always uses it, plain "codex" too when it is the default. Trusted workspace folders are marked trusted for Codex. Your other settings stay as they are; the previous file is kept as config.toml.bak.`,
      },
      add,
      addDefault,
    );
    if (pick !== add && pick !== addDefault) return;
    const report: AgentsReport = { changed: [], problems: [] };
    await prepareCodex(
      {
        url: c.url,
        trustedFolders: this.trustedFolders(),
        makeCodexDefault: pick === addDefault,
        mcpGateway: this.gateway.found && this.mcpGatewayOn(),
      },
      report,
    );
    if (report.problems.length > 0) {
      void vscode.window.showErrorMessage(plainNotificationText(`AI Bridge: ${report.problems.join(' ')}`));
      return;
    }
    const use = report.codexIsDefault ? 'codex' : `codex --profile ${CODEX_PROVIDER}`;
    this.log.info(`codex configured: ${report.changed.join(', ') || 'no change'}`);
    void vscode.window.showInformationMessage(
      `AI Bridge: ${report.changed.length > 0 ? 'updated' : 'already up to date:'} ${file}. Run \`${use}\` in a new terminal.`,
    );
  }

  private showDiagnostics(): void {
    const s = this.session.current;
    const c = this.model.connection;
    const lines = [
      `activation: ${this.activationMs.toFixed(1)} ms`,
      `signed in: ${s ? `${s.url} as ${s.user?.email ?? this.model.user?.email ?? '?'}` : 'no'}`,
      `connection: ${c.status}`,
      `interceptions in view: ${this.model.items.length}`,
    ];
    for (const l of lines) this.log.info(l);
    this.log.show(true);
    void vscode.window.showInformationMessage(
      plainNotificationText(`AI Bridge diagnostics: ${lines.join(' · ')}`),
    );
  }

  dispose(): void {
    clearInterval(this.periodTimer);
    clearInterval(this.renewalTimer);
    this.stopLive();
    for (const d of this.disposables.reverse()) d.dispose();
    this.disposables.length = 0;
  }
}
