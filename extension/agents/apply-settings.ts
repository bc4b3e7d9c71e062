import * as vscode from 'vscode';
import type { AgentsReport } from './prepare-agents';
import { autoImportSettingValue } from './roo-settings';

/**
 * Applies the settings a prepare/undo report asks for (Roo Code's and Kilo Code's
 * `autoImportSettingsPath`), in the user's settings: ours is set unless the user points the setting
 * at a file of their own, and removed at sign-out only if it is still ours. Problems are returned,
 * one sentence each, for the log.
 */
export async function applyAgentSettings(report: AgentsReport): Promise<string[]> {
  const problems: string[] = [];
  const config = vscode.workspace.getConfiguration();
  for (const s of report.settings ?? []) {
    const current = config.inspect<string>(s.key)?.globalValue;
    try {
      if (s.value === undefined) {
        if (current !== undefined && report.changed.includes(current))
          await config.update(s.key, undefined, vscode.ConfigurationTarget.Global);
        continue;
      }
      const value = autoImportSettingValue(current, s.value);
      if (value === undefined) problems.push(`${s.key} points at ${String(current)}; left as it is.`);
      else if (value !== current) await config.update(s.key, value, vscode.ConfigurationTarget.Global);
    } catch (err) {
      problems.push(`${s.key}: ${(err as Error).message}`);
    }
  }
  return problems;
}
