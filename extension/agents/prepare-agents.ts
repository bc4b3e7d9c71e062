import fs from 'node:fs/promises';
import path from 'node:path';
import { readTextOrEmpty, writeFileAtomic } from '../atomic-file';
import { holdsBridgeKey } from '../auth/sign-in';
import {
  codexProfileText,
  PROFILE_MARKER,
  withBridgeProvider,
  withoutBridgeProvider,
} from '../codex/codex-config';
import { codexConfigPath, codexProfilePath } from '../codex/codex-file';
import { withGatewayServer, withoutGatewayServer } from '../codex/codex-mcp';
import { claudeConfigPath, withClaudeReady } from './claude-config';
import { withClaudeGateway, withoutClaudeGateway } from './claude-mcp';
import { continueConfigPath, withBridgeModels, withoutBridgeModels } from './continue-config';
import {
  geminiSettingsPath,
  geminiTrustedFoldersPath,
  withApiKeyAuth,
  withTrustedFolders,
} from './gemini-settings';
import { importSettingsPath, ROO_FAMILY, type RooFamily, rooImportText } from './roo-settings';

type Env = Record<string, string | undefined>;

export interface PrepareAgentsOptions {
  /** The bridge's base URL. */
  url: string;
  /** Folders the agents should not ask "do you trust this folder?" about: VS Code's trusted workspace folders. */
  trustedFolders: readonly string[];
  /** Where the agents' files are found (HOME, CLAUDE_CONFIG_DIR, CODEX_HOME); by default the process's. */
  env?: Env;
  /** The user asked to make the bridge Codex's default provider even though another one is. */
  makeCodexDefault?: boolean;
  /** Bring your own key (`aibridge.byok`): Codex sends the bridge key as `X-AIBridge-Key`, its own key stays the user's. */
  byok?: boolean;
  /**
   * Register the bridge's MCP gateway (`<url>/mcp`) with Claude Code and Codex (default); false removes
   * the entries written earlier (the setting turned off, or a bridge without the gateway).
   */
  mcpGateway?: boolean;
  /**
   * The bridge serves a Gemini-speaking instance (the terminal then points Gemini CLI at it): Gemini
   * CLI is set to sign in with `GEMINI_API_KEY`, unless the user chose another way. Absent: untouched.
   */
  gemini?: boolean;
  /**
   * The IDE clients that read their key from a file of theirs, not the terminal env: each one set
   * up only when asked (a setting or its command), with the signed-in key.
   */
  ide?: IdeClients;
}

export interface IdeClients {
  /** The signed-in user's bridge key, written into the clients' files (0600, undone at sign-out). */
  key: string;
  /** Continue: these Anthropic (and OpenAI) models in `~/.continue/config.yaml`. */
  continue?: { anthropicModels: readonly string[]; openaiModels?: readonly string[] };
  /** Roo Code: an import file with an AI Bridge profile on this model (served on `/openai/v1`). */
  rooCode?: { model: string };
  /** Kilo Code: the same as Roo Code, with its own file and setting. */
  kiloCode?: { model: string };
}

/** A VS Code setting the caller applies (the agents module has no vscode import). */
export interface SettingChange {
  /** e.g. `roo-cline.autoImportSettingsPath`. */
  key: string;
  /** The value to set; undefined to remove ours. */
  value: string | undefined;
}

export interface AgentsReport {
  /** Files written (each previous version kept as `<file>.bak`) or removed. */
  changed: string[];
  /** What could not be done, one sentence each; the other agent is still prepared. */
  problems: string[];
  /** Whether plain `codex` uses the bridge (else `codex --profile aibridge`); undefined when Codex failed. */
  codexIsDefault?: boolean;
  /** Settings to apply (Roo Code's and Kilo Code's `autoImportSettingsPath`). */
  settings?: SettingChange[];
}

function problem(file: string, err: unknown): string {
  return `${file}: ${(err as Error).message}`;
}

function addSetting(report: AgentsReport, change: SettingChange): void {
  report.settings = [...(report.settings ?? []), change];
}

/**
 * Reads, edits and (when it changed) rewrites one file; a problem is reported, not thrown. A file
 * that then holds a bridge key (`key`, or any key's shape) is made private to the user.
 */
async function edit(
  file: string,
  change: (text: string) => { ok: true; text: string; changed: boolean } | { ok: false; message: string },
  report: AgentsReport,
  key?: string,
): Promise<boolean> {
  try {
    const original = await readTextOrEmpty(file);
    const r = change(original);
    if (!r.ok) {
      report.problems.push(`${file}: ${r.message}`);
      return false;
    }
    if (r.changed) {
      // The previous version is kept as `.bak`, unless it holds a bridge key (a Continue config or
      // import file of ours): the sign-out's edit would otherwise leave the key in the backup, and
      // a second sign-in would replace the backup of the user's own file with one of ours.
      const secret = holdsBridgeKey(r.text) || (key !== undefined && r.text.includes(key));
      await writeFileAtomic(file, r.text, holdsBridgeKey(original) ? '' : original, secret);
      report.changed.push(file);
    }
    return true;
  } catch (err) {
    report.problems.push(problem(file, err));
    return false;
  }
}

/**
 * Every file {@link edit} writes, so every `<file>.bak` the extension may have left: the agents'
 * configs, Codex's profile, Continue's config and the Roo Code and Kilo Code import files. A file
 * edited here must be listed here too.
 */
function backedUpFiles(env: Env | undefined): string[] {
  return [
    claudeConfigPath(env),
    codexConfigPath(env),
    codexProfilePath(env),
    geminiSettingsPath(env),
    geminiTrustedFoldersPath(env),
    continueConfigPath(env),
    importSettingsPath('rooCode', env),
    importSettingsPath('kiloCode', env),
  ];
}

/**
 * Removes the backups of ours that hold a bridge key, at every prepare and undo. Earlier versions
 * kept the signed-in version of a file as `<file>.bak` (Continue's `config.yaml.bak` with the key
 * in its models, the Roo Code and Kilo Code import files); {@link edit} no longer writes such a
 * backup, but one written before an upgrade would otherwise keep the key on disk for good. Only
 * the `<file>.bak` of a file listed in {@link backedUpFiles} is looked at, and only when it holds
 * a key; a backup without one (the user's own file before the bridge) stays.
 */
async function removeKeyBackups(env: Env | undefined, report: AgentsReport): Promise<void> {
  for (const file of backedUpFiles(env)) {
    const bak = `${file}.bak`;
    try {
      const st = await fs.lstat(bak).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      if (!st?.isFile()) continue;
      if (!holdsBridgeKey(await readTextOrEmpty(bak))) continue;
      await fs.rm(bak, { force: true });
      report.changed.push(bak);
    } catch (err) {
      report.problems.push(problem(bak, err));
    }
  }
}

type Change = (text: string) => { ok: true; text: string; changed: boolean } | { ok: false; message: string };

/**
 * `first`, then `second` on its result, as one edit (one write, one `.bak` of the user's own file).
 * When `second` refuses, its problem is reported and `first`'s result is kept.
 */
function andThen(file: string, first: Change, second: Change, report: AgentsReport): Change {
  return (text) => {
    const a = first(text);
    if (!a.ok) return a;
    const b = second(a.text);
    if (!b.ok) {
      report.problems.push(`${file}: ${b.message}`);
      return a;
    }
    return { ok: true, text: b.text, changed: a.changed || b.changed };
  };
}

/**
 * Each folder as given (absolute) and, when it differs, its real path: an agent keys trust by its
 * working directory, which the OS reports with symbolic links resolved.
 */
async function trustKeys(folders: readonly string[]): Promise<string[]> {
  const keys = new Set<string>();
  for (const f of folders) {
    const abs = path.resolve(f);
    keys.add(abs);
    try {
      keys.add(await fs.realpath(abs));
    } catch {
      // A folder that does not exist (yet) is trusted by the path given.
    }
  }
  return [...keys];
}

/** Claude Code: onboarding done, the trusted folders' safety check answered, the MCP gateway added. */
export async function prepareClaude(o: PrepareAgentsOptions, report: AgentsReport): Promise<void> {
  const trustedFolders = await trustKeys(o.trustedFolders);
  const file = claudeConfigPath(o.env);
  const gateway =
    o.mcpGateway === false
      ? withoutClaudeGateway
      : (t: string) => withClaudeGateway(t, o.url, o.byok === true);
  await edit(
    file,
    andThen(file, (t) => withClaudeReady(t, { trustedFolders }), gateway, report),
    report,
  );
}

/** Codex: the aibridge provider (the default when no other is), its profile file, the trusted folders. */
export async function prepareCodex(o: PrepareAgentsOptions, report: AgentsReport): Promise<void> {
  let isDefault: boolean | undefined;
  const trustedFolders = await trustKeys(o.trustedFolders);
  const file = codexConfigPath(o.env);
  const gateway =
    o.mcpGateway === false
      ? withoutGatewayServer
      : (t: string) => withGatewayServer(t, o.url, o.byok === true);
  const ok = await edit(
    file,
    andThen(
      file,
      (t) => {
        const r = withBridgeProvider(t, {
          url: o.url,
          makeDefault: o.makeCodexDefault === true,
          trustedFolders,
          byok: o.byok === true,
        });
        if (r.ok) isDefault = r.isDefault;
        return r;
      },
      gateway,
      report,
    ),
    report,
  );
  if (!ok) return;
  report.codexIsDefault = isDefault;
  // Our file, written whole: `codex --profile aibridge` works even when another provider is the default.
  await edit(
    codexProfilePath(o.env),
    (t) => ({ ok: true, text: codexProfileText(), changed: t !== codexProfileText() }),
    report,
  );
}

/**
 * Gemini CLI: the API-key sign-in chosen in `~/.gemini/settings.json` when the user chose none, and
 * the trusted folders in `~/.gemini/trustedFolders.json`. Each file on its own.
 */
export async function prepareGemini(o: PrepareAgentsOptions, report: AgentsReport): Promise<void> {
  await edit(geminiSettingsPath(o.env), withApiKeyAuth, report);
  const trustedFolders = await trustKeys(o.trustedFolders);
  if (trustedFolders.length > 0)
    await edit(geminiTrustedFoldersPath(o.env), (t) => withTrustedFolders(t, trustedFolders), report);
}

/** Continue: the bridge's models in its config, the user's own kept. */
export async function prepareContinue(
  o: PrepareAgentsOptions & { ide: IdeClients & { continue: NonNullable<IdeClients['continue']> } },
  report: AgentsReport,
): Promise<void> {
  const models = { url: o.url, key: o.ide.key, ...o.ide.continue };
  await edit(continueConfigPath(o.env), (t) => withBridgeModels(t, models), report, o.ide.key);
}

/** Roo Code or Kilo Code: our import file, and the setting that makes it import it at start. */
export async function prepareRoo(
  which: RooFamily,
  o: PrepareAgentsOptions & { ide: IdeClients },
  report: AgentsReport,
): Promise<void> {
  const wanted = o.ide[which];
  if (!wanted) return;
  const file = importSettingsPath(which, o.env);
  const text = rooImportText(which, { url: o.url, key: o.ide.key, model: wanted.model });
  const ok = await edit(file, (t) => ({ ok: true, text, changed: t !== text }), report, o.ide.key);
  if (ok) addSetting(report, { key: ROO_FAMILY[which].setting, value: file });
}

/** The IDE clients asked for in `o.ide`, each on its own. */
async function prepareIdeClients(o: PrepareAgentsOptions, report: AgentsReport): Promise<void> {
  const ide = o.ide;
  if (!ide) return;
  if (ide.continue) await prepareContinue({ ...o, ide: { ...ide, continue: ide.continue } }, report);
  await prepareRoo('rooCode', { ...o, ide }, report);
  await prepareRoo('kiloCode', { ...o, ide }, report);
}

/**
 * Makes `claude` and `codex` (and `gemini`, when the bridge serves Gemini), typed in a new terminal, reach their prompt with no question: called
 * at sign-in. Each agent's files are edited on their own; a problem with one is reported and the
 * other is still prepared. Nothing here holds the key: the agents read it from the terminal env.
 */
export async function prepareAgents(o: PrepareAgentsOptions): Promise<AgentsReport> {
  const report: AgentsReport = { changed: [], problems: [] };
  await removeKeyBackups(o.env, report);
  await prepareClaude(o, report);
  await prepareCodex(o, report);
  if (o.gemini === true) await prepareGemini(o, report);
  await prepareIdeClients(o, report);
  return report;
}

/**
 * Only the IDE clients asked for in `o.ide` (their "Set Up" command, or `aibridge.ideClients` with
 * `aibridge.prepareAgents` off): Claude Code's, Codex's and Gemini CLI's files are not touched.
 */
export async function prepareIdeClientsOnly(o: PrepareAgentsOptions): Promise<AgentsReport> {
  const report: AgentsReport = { changed: [], problems: [] };
  await removeKeyBackups(o.env, report);
  await prepareIdeClients(o, report);
  return report;
}

/**
 * Sign-out with `aibridge.prepareAgents` off: what an IDE client's set-up wrote is taken back all
 * the same (its files hold the key), and nothing else.
 */
export async function undoIdeClientsOnly(o: { env?: Env } = {}): Promise<AgentsReport> {
  const report: AgentsReport = { changed: [], problems: [] };
  await undoIdeClients(o.env, report);
  await removeKeyBackups(o.env, report);
  return report;
}

/**
 * Sign-out: removes what {@link prepareAgents} added to Codex (the provider, the default it set, the
 * profile file, the MCP gateway) and Claude Code's MCP gateway entry. Claude's onboarding and trust
 * flags, and Codex's trusted folders, stay: they are the user's state and harmless without the bridge.
 */
export async function undoAgents(o: { env?: Env } = {}): Promise<AgentsReport> {
  const report: AgentsReport = { changed: [], problems: [] };
  const codexFile = codexConfigPath(o.env);
  await edit(codexFile, andThen(codexFile, withoutBridgeProvider, withoutGatewayServer, report), report);
  await edit(claudeConfigPath(o.env), withoutClaudeGateway, report);
  const profile = codexProfilePath(o.env);
  try {
    const text = await readTextOrEmpty(profile);
    if (text.startsWith(PROFILE_MARKER)) {
      await fs.rm(profile, { force: true });
      report.changed.push(profile);
    } else if (text !== '') {
      report.problems.push(
        `${profile}: not written by AI Bridge (its first line was changed); left as it is.`,
      );
    }
  } catch (err) {
    report.problems.push(problem(profile, err));
  }
  await undoIdeClients(o.env, report);
  await removeKeyBackups(o.env, report);
  return report;
}

/**
 * Removes the bridge's models from Continue's config (the user's stay) and Roo's and Kilo's import
 * files (they hold the key), and asks for the import settings to be cleared. Roo and Kilo keep the
 * profile they imported in their own storage: the key in it no longer works once signed out.
 */
async function undoIdeClients(env: Env | undefined, report: AgentsReport): Promise<void> {
  await edit(continueConfigPath(env), withoutBridgeModels, report);
  for (const which of ['rooCode', 'kiloCode'] as const) {
    const file = importSettingsPath(which, env);
    try {
      if ((await readTextOrEmpty(file)) !== '') {
        await fs.rm(file, { force: true });
        // The previous version held a key too.
        await fs.rm(`${file}.bak`, { force: true });
        report.changed.push(file);
        addSetting(report, { key: ROO_FAMILY[which].setting, value: undefined });
      }
    } catch (err) {
      report.problems.push(problem(file, err));
    }
  }
}
