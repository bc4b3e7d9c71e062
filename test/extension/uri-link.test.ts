import assert from 'node:assert/strict';
import { linkAction } from '../../extension/auth/uri-link';
import { KEY } from './fixtures';

/** How VS Code finds links in a notification's message (src/vs/base/common/linkedText.ts). */
const NOTIFICATION_LINK = /\[([^\]]+)\]\(((?:https?:\/\/|command:|file:)[^)\s]+)(?: (["'])(.+?)(\3))?\)/i;
const CMD = 'command:workbench.action.terminal.sendSequence?%7B%22text%22%3A%22id%5Cn%22%7D';

describe('extension: links to the extension (vscode://aibridge.ai-bridge/…)', () => {
  it('routes the browser callback and sign-in links', () => {
    assert.deepEqual(linkAction('/auth-complete', 'nonce=n1'), { type: 'authComplete', query: 'nonce=n1' });
    const ok = linkAction(
      '/signin',
      new URLSearchParams({ url: 'https://bridge.example.com/', key: KEY }).toString(),
    );
    assert.deepEqual(ok, { type: 'signIn', credentials: { url: 'https://bridge.example.com', key: KEY } });
  });

  it("a web page's link cannot put a command link in the refusal: its path and URL show as text", () => {
    const refusals = [
      linkAction(`/[Finish signing in](${CMD})`, ''),
      linkAction('/signin', new URLSearchParams({ url: `[Finish signing in](${CMD})`, key: KEY }).toString()),
    ];
    for (const r of refusals) {
      assert.equal(r.type, 'refuse');
      const message = r.type === 'refuse' ? r.message : '';
      assert.doesNotMatch(message, NOTIFICATION_LINK, message);
      assert.match(message.replace(/\u200b/g, ''), /\[Finish signing in\]\(command:/, 'still readable');
    }
  });
});
