import type * as vscode from 'vscode';
import type { TerminalEnv } from './env';

/** The part of `context.environmentVariableCollection` this uses (a fake in tests). */
export type EnvCollection = Pick<vscode.EnvironmentVariableCollection, 'clear' | 'replace'> & {
  persistent: boolean;
  description: string | vscode.MarkdownString | undefined;
};

/**
 * Puts the variables into every new terminal: clears what was there, replaces each variable and
 * says why. Not persisted, because VS Code would store the values (the key) in workspace storage;
 * terminals opened before sign-in are marked stale by VS Code and pick the values up when relaunched.
 */
export function applyTerminalEnv(collection: EnvCollection, env: TerminalEnv, description: string): void {
  collection.persistent = false;
  collection.clear();
  collection.description = description;
  for (const [name, value] of env.vars) collection.replace(name, value);
}

/** Signed out: new terminals get none of the variables, open ones are marked stale. */
export function clearTerminalEnv(collection: EnvCollection): void {
  collection.clear();
  collection.description = undefined;
}
