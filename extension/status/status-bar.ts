import * as vscode from 'vscode';
import type { BridgeModel } from '../model/bridge-model';
import { renderStatus } from './status-render';

/** The status bar item: renders the model whenever the connection or spend changes, synchronously. */
export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(
    'aibridge.status',
    vscode.StatusBarAlignment.Left,
    100,
  );
  private readonly subscription: { dispose(): void };

  constructor(
    private readonly model: BridgeModel,
    private readonly bridgeUrl: () => string | null,
  ) {
    this.item.name = 'AI Bridge';
    this.subscription = model.onDidChange((change) => {
      if (change !== 'interceptions') this.render();
    });
    this.render();
    this.item.show();
  }

  render(): void {
    const v = renderStatus(this.model, this.bridgeUrl());
    this.item.text = v.text;
    const tooltip = new vscode.MarkdownString(v.tooltip, true);
    tooltip.isTrusted = false;
    this.item.tooltip = tooltip;
    this.item.command = v.command;
    this.item.accessibilityInformation = { label: v.accessibilityLabel };
    this.item.backgroundColor =
      v.severity === 'error'
        ? new vscode.ThemeColor('statusBarItem.errorBackground')
        : v.severity === 'warning'
          ? new vscode.ThemeColor('statusBarItem.warningBackground')
          : undefined;
  }

  dispose(): void {
    this.subscription.dispose();
    this.item.dispose();
  }
}
