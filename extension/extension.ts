import type * as vscode from 'vscode';

/** The extension's features arrive with issue 8; activation stays cheap until then. */
export function activate(_context: vscode.ExtensionContext): void {}

export function deactivate(): void {}
