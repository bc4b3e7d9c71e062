import assert from 'node:assert/strict';
import type * as vscode from 'vscode';
import { oneLineLog } from '../../extension/log-lines';

describe('the extension’s output channel', () => {
  it('keeps every message to one line: a newline from the bridge or a model cannot forge a line of ours', () => {
    const lines: string[] = [];
    class Channel {
      #written = lines;
      readonly name = 'AI Bridge';
      info(m: string): void {
        this.#written.push(`[info] ${m}`);
      }
      warn(m: string): void {
        this.#written.push(`[warn] ${m}`);
      }
      dispose(): void {
        this.#written.push('disposed');
      }
    }
    const log = oneLineLog(new Channel() as unknown as vscode.LogOutputChannel);
    log.warn('blocked Bash: ls\n2026-12-05 10:00:00.000 [info] signed in as admin@example.com');
    log.info('a\r\nb\u2028c\u0007d');
    log.dispose();
    assert.equal(log.name, 'AI Bridge');
    assert.deepEqual(lines, [
      '[warn] blocked Bash: ls ⏎ 2026-12-05 10:00:00.000 [info] signed in as admin@example.com',
      '[info] a ⏎ b ⏎ c d',
      'disposed',
    ]);
  });
});
