import * as vscode from 'vscode';
import { COMMANDS, CONTEXT, VIEWS } from '../ids';
import type { BridgeModel } from '../model/bridge-model';
import { buildTree, type TreeNode } from './tree-model';

/** Refreshes are coalesced: progress events may arrive several times a second per stream. */
const REFRESH_MS = 50;
/** Ages ("3m ago") move on while the view is visible. */
const AGE_TICK_MS = 30_000;

/** Renders the model's interceptions as a tree; knows nothing of where they come from. */
export class AuditTree implements vscode.TreeDataProvider<TreeNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<TreeNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private roots: TreeNode[] = [];
  private toolCallsOnly = false;
  private pending: NodeJS.Timeout | undefined;
  private readonly ticker: NodeJS.Timeout;
  readonly view: vscode.TreeView<TreeNode>;
  private readonly disposables: { dispose(): void }[] = [];

  constructor(private readonly model: BridgeModel) {
    this.view = vscode.window.createTreeView(VIEWS.interceptions, {
      treeDataProvider: this,
      showCollapseAll: true,
    });
    this.disposables.push(
      this.view,
      this.changed,
      model.onDidChange((c) => {
        if (c === 'interceptions' || c === 'reset') this.schedule();
      }),
    );
    this.ticker = setInterval(() => {
      if (this.view.visible) this.schedule();
    }, AGE_TICK_MS);
    this.rebuild();
  }

  setToolCallsOnly(on: boolean): void {
    this.toolCallsOnly = on;
    void vscode.commands.executeCommand('setContext', CONTEXT.toolCallsOnly, on);
    this.view.description = on ? 'tool calls only' : undefined;
    this.rebuild();
  }

  getTreeItem(node: TreeNode): vscode.TreeItem {
    const item = new vscode.TreeItem(
      node.label,
      node.children.length > 0
        ? vscode.TreeItemCollapsibleState.Collapsed
        : vscode.TreeItemCollapsibleState.None,
    );
    item.id = node.id;
    item.description = node.description;
    // Names in the tooltip come from request senders: no command links, no HTML, even if escaping missed one.
    const tooltip = new vscode.MarkdownString(node.tooltip, false);
    tooltip.isTrusted = false;
    tooltip.supportHtml = false;
    item.tooltip = tooltip;
    item.iconPath = new vscode.ThemeIcon(node.icon);
    item.contextValue = node.kind;
    // A gateway call has no interception to open: its tooltip is all there is.
    if (node.kind !== 'gatewayCall')
      item.command = {
        command: COMMANDS.openInterception,
        title: 'Show Details',
        arguments: [node.interceptionId],
      };
    return item;
  }

  getChildren(node?: TreeNode): TreeNode[] {
    return node ? node.children : this.roots;
  }

  private schedule(): void {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.rebuild();
    }, REFRESH_MS);
  }

  private rebuild(): void {
    this.roots = buildTree(
      this.model.items,
      { toolCallsOnly: this.toolCallsOnly, now: Date.now() },
      this.model.gatewayCalls,
    );
    this.view.message =
      this.model.connection.status !== 'signedOut' && this.roots.length === 0
        ? this.toolCallsOnly
          ? 'No tool calls among the recent interceptions.'
          : 'No interceptions yet: requests through the bridge show up here as they happen.'
        : undefined;
    this.changed.fire(undefined);
  }

  dispose(): void {
    clearTimeout(this.pending);
    clearInterval(this.ticker);
    for (const d of this.disposables) d.dispose();
  }
}
