import assert from 'node:assert/strict';
import { BridgeApiError } from '../../extension/api/bridge-client';
import { DeviceSignInError } from '../../extension/auth/device-sign-in';
import { signInFailure } from '../../extension/auth/sign-in-failure';

/** A notification renders `[label](target)` as a link; `](` adjacent is what makes one. */
const LINK = '](';

describe('extension: sign-in failures shown in notifications', () => {
  it('a bridge error message and the URL from a link never become command links', () => {
    const text = signInFailure(
      new BridgeApiError(500, 'x', '[Retry](command:workbench.action.terminal.sendSequence?%7B%7D)'),
      'https://h/[x](command:y)',
    );
    assert.ok(!text.includes(LINK), text);
    // Still reads as it did: only a zero-width space sits between `]` and `(`.
    assert.equal(
      text.replaceAll('\u200b', ''),
      'The bridge at https://h/[x](command:y) answered 500: [Retry](command:workbench.action.terminal.sendSequence?%7B%7D)',
    );
  });

  it('no links from an unreachable bridge, a device sign-in refusal or any other error', () => {
    for (const err of [
      new BridgeApiError(
        0,
        'unreachable',
        'Cannot reach the bridge at https://h/[a](command:b) (ECONNREFUSED).',
      ),
      new DeviceSignInError('invalid_grant', '[Open](command:workbench.action.terminal.sendSequence)'),
      new Error('[a](https://evil.example)'),
    ]) {
      const text = signInFailure(err, 'https://h');
      assert.ok(!text.includes(LINK), text);
    }
  });

  it('a device sign-in error reads as its own message', () => {
    assert.equal(
      signInFailure(
        new DeviceSignInError('access_denied', 'The sign-in was denied in the browser.'),
        'https://h',
      ),
      'The sign-in was denied in the browser.',
    );
  });

  it('a refused key reads as such', () => {
    assert.equal(
      signInFailure(new BridgeApiError(401, 'unauthorized', 'nope'), 'https://h'),
      'The bridge refused this key (unknown, revoked or expired).',
    );
  });
});
