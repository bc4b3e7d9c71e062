import type { ToolPolicyRule } from '../../shared/tool-policy';

/**
 * The documented example rules (docs/governance.md), served by `GET /api/v1/tool-policy/examples`
 * as a ready `PUT` body. None applies until an admin puts them. Patterns run over the call's
 * arguments as JSON text, so a shell command appears inside a JSON string (`"command":"…"`): they
 * stop at `"` to stay within one argument. They run on RE2 (server/policy/tool-rules.ts): linear time.
 */
export const EXAMPLE_RULES: readonly ToolPolicyRule[] = [
  {
    // `rm -rf` (any flag order) on an absolute path, the home directory or a parent: outside the workspace.
    id: 'no-rm-rf-outside-workspace',
    tool: '*',
    argumentPattern: String.raw`\brm\s+(-[a-zA-Z]*[rR][a-zA-Z]*f[a-zA-Z]*|-[a-zA-Z]*f[a-zA-Z]*[rR][a-zA-Z]*|(-[rR]\s+-f|-f\s+-[rR]))\s+(/|~|\$HOME|\.\./)`,
    action: 'deny',
    scope: 'org',
  },
  {
    // A forced push naming a protected branch.
    id: 'no-force-push-protected',
    tool: '*',
    argumentPattern: String.raw`\bgit\s+push\b[^"]*\s(--force\b|--force-with-lease\b|-f\b)[^"]*\b(main|master|release[^"\s]*)\b`,
    action: 'deny',
    scope: 'org',
  },
  {
    // A download piped straight into a shell.
    id: 'no-curl-pipe-shell',
    tool: '*',
    argumentPattern: String.raw`\b(curl|wget)\b[^"|]*\|\s*(sudo\s+)?(ba|z|da)?sh\b`,
    action: 'deny',
    scope: 'org',
  },
  {
    // Anything touching SSH keys or AWS credentials in a home directory: flagged, not blocked.
    id: 'flag-credential-reads',
    tool: '*',
    argumentPattern: String.raw`(~|\$HOME|/home/[^/"]+|/Users/[^/"]+|/root)/\.(ssh|aws)\b`,
    action: 'audit',
    scope: 'org',
  },
];
