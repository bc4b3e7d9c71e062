import fs from 'node:fs/promises';
import path from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';

/** Debian's Chromium (scripts/e2e-setup.sh installs it). */
export const CHROMIUM = process.env.AIBRIDGE_E2E_CHROMIUM ?? '/usr/bin/chromium';

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Drives the VS Code workbench in a page the way a user would: keyboard, command palette, clicks. */
export class Workbench {
  private shots = 0;

  constructor(
    readonly page: Page,
    private readonly artifacts: string,
  ) {}

  /** Waits for the workbench and the status bar to be there. */
  async ready(timeoutMs = 60_000): Promise<void> {
    await this.page.locator('.monaco-workbench').waitFor({ timeout: timeoutMs });
    await this.page.locator('#workbench\\.parts\\.statusbar').waitFor({ timeout: timeoutMs });
  }

  /** Saves a numbered screenshot in the artifacts folder. */
  async screenshot(name: string): Promise<string> {
    this.shots++;
    const file = path.join(this.artifacts, `${String(this.shots).padStart(2, '0')}-${name}.png`);
    await fs.mkdir(this.artifacts, { recursive: true });
    await this.page.screenshot({ path: file });
    return file;
  }

  private get quickInput() {
    return this.page.locator('.quick-input-widget');
  }

  /** Runs a command from the palette by its title, e.g. "AI Bridge: Sign In". */
  async runCommand(title: string): Promise<void> {
    await this.typeInPalette(`>${title}`);
    // The row whose label is exactly the title: "Sign In" must not pick "Sign In with a Key".
    const exact = new RegExp(`^${title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
    const row = this.quickInput
      .locator('.monaco-list-row')
      .filter({ has: this.page.locator('.label-name', { hasText: exact }) })
      .first();
    await row.waitFor({ state: 'visible', timeout: 15_000 });
    // The list settles on the best match first; the exact title is clicked, not whatever is on top.
    await row.click();
  }

  /**
   * Opens the palette and types `text` in it. The palette can close again right after it opened:
   * it closes when it loses focus, and the workbench may still be moving focus after the last
   * command (CI saw this once after "Clear All Notifications": the input was there, then hidden
   * for 30 s). So it tries again, as a user would press F1 again, and says so in the log.
   */
  private async typeInPalette(text: string, attempts = 3): Promise<void> {
    const input = this.quickInput.locator('input.input');
    for (let attempt = 1; ; attempt++) {
      await this.closeQuickInput();
      await this.quickInput.waitFor({ state: 'hidden', timeout: 5000 }).catch(() => undefined);
      await this.page.keyboard.press('F1');
      try {
        await input.waitFor({ state: 'visible', timeout: 15_000 });
        await input.fill(text, { timeout: 5000 });
        return;
      } catch (err) {
        if (attempt >= attempts) throw err;
        console.log(`      (the palette closed before "${text}" was typed; opening it again)`);
      }
    }
  }

  /** Types into the open input box (a showInputBox) and accepts it. */
  async answerInput(value: string, expectPrompt?: RegExp): Promise<void> {
    const widget = this.quickInput;
    await widget.waitFor({ state: 'visible', timeout: 15_000 });
    if (expectPrompt) {
      await this.page.waitForFunction(
        (re) => new RegExp(re).test(document.querySelector('.quick-input-widget')?.textContent ?? ''),
        expectPrompt.source,
        { timeout: 15_000 },
      );
    }
    const input = widget.locator('input.input');
    await input.fill(value);
    await input.press('Enter');
  }

  async closeQuickInput(): Promise<void> {
    if (await this.quickInput.isVisible()) await this.page.keyboard.press('Escape');
  }

  /** The AI Bridge status bar item's text. */
  statusItem() {
    return this.page.locator('[id="aibridge.ai-bridge.aibridge.status"]');
  }

  async statusText(): Promise<string> {
    return ((await this.statusItem().textContent()) ?? '').trim();
  }

  /** Waits until the status bar item's text matches `re` and returns it. */
  async waitForStatus(re: RegExp, timeoutMs = 20_000): Promise<string> {
    await this.page.waitForFunction(
      (src) =>
        new RegExp(src).test(
          (document.querySelector('[id="aibridge.ai-bridge.aibridge.status"]')?.textContent ?? '').trim(),
        ),
      re.source,
      { timeout: timeoutMs },
    );
    return this.statusText();
  }

  /** Clicks a button of the modal dialog (e.g. a confirmation). */
  async clickDialogButton(label: string): Promise<void> {
    const dialog = this.page.locator('.monaco-dialog-box');
    await dialog.waitFor({ state: 'visible', timeout: 15_000 });
    await dialog.locator('.monaco-button', { hasText: label }).first().click();
    await dialog.waitFor({ state: 'hidden', timeout: 15_000 });
  }

  /**
   * Answers every modal dialog that shows up, one after another, with `label`, and returns how
   * many it answered. VS Code queues a second dialog behind the first when a command runs twice
   * (a menu item activated by a click and then by Enter), and a click landing while a dialog
   * animates in can be lost: both leave a dialog up that one click would not clear.
   */
  async answerDialogs(label: string, firstTimeoutMs = 5000, max = 3): Promise<number> {
    const dialog = this.page.locator('.monaco-dialog-box');
    let answered = 0;
    while (answered < max) {
      const shown = await dialog
        .waitFor({ state: 'visible', timeout: answered === 0 ? firstTimeoutMs : 1500 })
        .then(() => true)
        .catch(() => false);
      if (!shown) break;
      await dialog.locator('.monaco-button', { hasText: label }).first().click();
      answered++;
      await dialog.waitFor({ state: 'hidden', timeout: 3000 }).catch(() => undefined);
    }
    return answered;
  }

  /**
   * Closes every notification toast that can be closed. VS Code shows at most three toasts, fewer
   * when they are tall, and a newer one waits hidden until one goes: a test that waits for a toast
   * clears the earlier tests' first.
   */
  async clearNotifications(): Promise<void> {
    await this.runCommand('Notifications: Clear All Notifications');
    await this.page
      .locator('.notification-toast')
      .first()
      .waitFor({ state: 'hidden', timeout: 3000 })
      .catch(() => undefined);
  }

  /** Waits for a notification toast whose text matches `re`. */
  async waitForNotification(re: RegExp, timeoutMs = 15_000): Promise<string> {
    const toast = this.page.locator('.notification-toast', { hasText: re }).first();
    await toast.waitFor({ state: 'visible', timeout: timeoutMs });
    return ((await toast.textContent()) ?? '').trim();
  }

  /** Text of every visible row in a tree view pane, e.g. the audit view. */
  async treeRows(paneTitle: string): Promise<string[]> {
    const pane = this.page.locator('.pane', {
      has: this.page.locator('.pane-header', { hasText: paneTitle }),
    });
    return pane
      .locator('.monaco-list-row')
      .evaluateAll((rows) => rows.map((r) => (r.textContent ?? '').trim()));
  }
}
