// First import: its module runs before the others are evaluated, so activation time includes them.

import type * as vscode from 'vscode';
import { bootTime } from './boot-clock';
import { Container } from './container';

/** Builds the container and returns at once; signing in (network) continues in the background. */
export function activate(context: vscode.ExtensionContext): void {
  const container = new Container(context);
  context.subscriptions.push(container);
  container.activationMs = performance.now() - bootTime;
  container.log.info(`activated in ${container.activationMs.toFixed(1)} ms`);
  void container.start().catch((err: unknown) => container.log.error(`start: ${(err as Error).message}`));
}

export function deactivate(): void {}
