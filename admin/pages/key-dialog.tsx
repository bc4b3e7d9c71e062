import { useState } from 'preact/hooks';
import type { CreatedKey } from '../../shared/identity';
import { Dialog } from '../ui';

/** The extension's sign-in link (publisher `aibridge`, name `ai-bridge`): it stores the key in VS Code's secret storage. */
export function vscodeSignInUri(bridgeUrl: string, key: string): string {
  return `vscode://aibridge.ai-bridge/signin?url=${encodeURIComponent(bridgeUrl)}&key=${encodeURIComponent(key)}`;
}

/**
 * Shows a new key once: copy it, or hand it to VS Code. The key lives only in this dialog's props;
 * closing it drops the last reference.
 */
export function KeyDialog({
  created,
  owner,
  onClose,
}: {
  created: CreatedKey | null;
  owner: string;
  onClose(): void;
}) {
  const [copied, setCopied] = useState(false);
  const copy = async (): Promise<void> => {
    if (!created) return;
    try {
      await navigator.clipboard.writeText(created.key);
      setCopied(true);
    } catch {
      // No clipboard outside secure contexts: select the text so Ctrl+C works.
      (document.getElementById('new-key') as HTMLInputElement | null)?.select();
    }
  };
  const close = (): void => {
    setCopied(false);
    onClose();
  };
  return (
    <Dialog open={created !== null} onClose={close} title="New bridge key">
      {created ? (
        <div class="key-dialog">
          <p>
            A key for <strong>{owner}</strong>. Copy it now: the bridge stores only its hash and will never
            show it again.
          </p>
          <input
            id="new-key"
            class="mono"
            readOnly
            value={created.key}
            data-testid="new-key"
            aria-label="New key"
          />
          <div class="actions">
            <button type="button" onClick={copy}>
              {copied ? 'Copied' : 'Copy'}
            </button>
            <a
              class="button"
              href={vscodeSignInUri(location.origin, created.key)}
              data-testid="connect-vscode"
            >
              Connect VS Code
            </a>
            <button type="button" onClick={close}>
              Done
            </button>
          </div>
          {created.expiresAt ? <p class="muted">Expires {created.expiresAt}.</p> : null}
        </div>
      ) : null}
    </Dialog>
  );
}
