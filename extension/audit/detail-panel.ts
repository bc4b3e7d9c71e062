import * as vscode from 'vscode';
import type { Interception } from '../../shared/interception';
import { plainNotificationText } from '../format';
import type { BridgeModel } from '../model/bridge-model';
import { type DetailSource, renderDetail } from './detail-html';

/** One reused webview showing an interception's details; renders what the model has, then the stored record. */
export class DetailPanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private showing: string | undefined;

  constructor(private readonly model: BridgeModel) {}

  async show(id: string, fetchRecord: ((id: string) => Promise<Interception>) | undefined): Promise<void> {
    const panel = this.ensurePanel();
    this.showing = id;
    const item = this.model.items.find((i) => i.id === id);
    if (item) {
      this.render({ kind: 'live', item, note: 'Loading the stored record…' });
      panel.title = `AI Bridge: ${item.model ?? 'interception'}`;
    }
    if (!fetchRecord) return;
    try {
      const record = await fetchRecord(id);
      if (this.showing !== id || this.panel !== panel) return;
      panel.title = `AI Bridge: ${record.model ?? 'interception'}`;
      this.render({ kind: 'record', record });
    } catch (err) {
      if (this.showing !== id || this.panel !== panel) return;
      const note = `The stored record could not be loaded: ${(err as Error).message}`;
      if (item) this.render({ kind: 'live', item, note });
      else void vscode.window.showErrorMessage(plainNotificationText(`AI Bridge: ${note}`));
    }
  }

  private render(src: DetailSource): void {
    if (!this.panel) return;
    this.panel.webview.html = renderDetail(src, this.panel.webview.cspSource);
  }

  private ensurePanel(): vscode.WebviewPanel {
    if (this.panel) {
      this.panel.reveal(undefined, true);
      return this.panel;
    }
    const panel = vscode.window.createWebviewPanel(
      'aibridge.interception',
      'AI Bridge: interception',
      { viewColumn: vscode.ViewColumn.Active, preserveFocus: true },
      { enableScripts: false, enableFindWidget: true, localResourceRoots: [] },
    );
    panel.onDidDispose(() => {
      if (this.panel === panel) this.panel = undefined;
    });
    this.panel = panel;
    return panel;
  }

  /** Signed out: the details of the last user's requests go away. */
  close(): void {
    this.panel?.dispose();
    this.panel = undefined;
  }

  dispose(): void {
    this.close();
  }
}
