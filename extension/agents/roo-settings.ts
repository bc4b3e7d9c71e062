import path from 'node:path';
import { homeDir } from '../home-dir';

type Env = Record<string, string | undefined>;

/** Roo Code and its fork Kilo Code read the same import format; each has its own setting and client name. */
export const ROO_FAMILY = {
  rooCode: {
    client: 'roo-code',
    setting: 'roo-cline.autoImportSettingsPath',
    file: 'roo-code-settings.json',
  },
  kiloCode: {
    client: 'kilo-code',
    setting: 'kilo-code.autoImportSettingsPath',
    file: 'kilo-code-settings.json',
  },
} as const;

export type RooFamily = keyof typeof ROO_FAMILY;

/** The profile name the bridge's settings are imported under; the user's other profiles are kept. */
export const PROFILE_NAME = 'AI Bridge';

/** Where the import file is written: `~/.aibridge/<client>-settings.json`, a file that is only ours. */
export function importSettingsPath(which: RooFamily, env: Env = process.env): string {
  return path.join(homeDir(env), '.aibridge', ROO_FAMILY[which].file);
}

export interface RooProfile {
  url: string;
  key: string;
  /** The model the profile uses, an id the bridge serves on `/openai/v1` (OpenAI-compatible). */
  model: string;
}

/**
 * The settings file Roo Code (Kilo Code) imports at start when `autoImportSettingsPath` names it:
 * one provider profile, OpenAI-compatible through the bridge's `/openai/v1` (the Roo provider that
 * takes custom headers, so the bridge can name the client), made the current one. Roo's import
 * merges profiles by name, so the user's own profiles stay.
 */
export function rooImportText(which: RooFamily, p: RooProfile): string {
  const settings = {
    providerProfiles: {
      currentApiConfigName: PROFILE_NAME,
      apiConfigs: {
        [PROFILE_NAME]: {
          id: 'aibridge',
          apiProvider: 'openai',
          openAiBaseUrl: `${p.url}/openai/v1`,
          openAiApiKey: p.key,
          openAiModelId: p.model,
          openAiHeaders: { 'x-aibridge-client': ROO_FAMILY[which].client },
        },
      },
    },
  };
  return `${JSON.stringify(settings, null, 2)}\n`;
}

/**
 * The value to give the `autoImportSettingsPath` setting: ours, unless the user points it at a file
 * of their own (then undefined: theirs is kept and the bridge's profile is not imported).
 */
export function autoImportSettingValue(current: unknown, ours: string): string | undefined {
  return typeof current !== 'string' || current.trim() === '' || current === ours ? ours : undefined;
}
