/**
 * Tool-call policy (docs/governance.md): rules over the tool calls a model asks a client-side agent
 * to run. Shared by the server, the admin page and the extension.
 */

export type ToolPolicyAction = 'deny' | 'audit';
export type ToolPolicyScope = 'org' | 'team' | 'user';

export interface ToolPolicyRule {
  /** Unique in the rule set; named in blocked messages, records and events. */
  id: string;
  /** A glob over tool names (`*` any run, `?` one character), case-sensitive: `Bash`, `mcp__github__*`. */
  tool: string;
  /** A regular expression over the call's arguments as JSON text (its first 64 KiB); absent: any arguments. */
  argumentPattern?: string;
  action: ToolPolicyAction;
  scope: ToolPolicyScope;
  /** The team name (scope `team`) or the user's id or email (scope `user`); none for `org`. */
  subject?: string;
  /** Default true; a disabled rule is kept but never applies. */
  enabled?: boolean;
}

export interface ToolPolicyDoc {
  rules: ToolPolicyRule[];
  /** When the rule set was last written; null while none was. */
  updatedAt: string | null;
}

/** What a rule decided about one tool call, kept on the call in the interception's `toolCalls`. */
export interface ToolPolicyMark {
  rule: string;
  action: ToolPolicyAction;
}

/** One call a dry run found a rule would have denied or flagged. */
export interface ToolPolicyDryRunHit {
  interceptionId: string;
  at: string;
  userId: string;
  userEmail: string;
  tool: string;
  rule: string;
  action: ToolPolicyAction;
  summary: string;
}

export interface ToolPolicyDryRun {
  days: number;
  /** Records read. */
  scanned: number;
  /** Tool calls evaluated. */
  calls: number;
  denied: number;
  flagged: number;
  /** The first DRY_RUN_MAX_HITS hits, oldest first. */
  items: ToolPolicyDryRunHit[];
  truncated: boolean;
}

export const DRY_RUN_MAX_HITS = 1000;

/** Longest summary of a call in a message or event. */
const SUMMARY_CHARS = 200;

function cut(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > SUMMARY_CHARS ? `${oneLine.slice(0, SUMMARY_CHARS - 1)}…` : oneLine;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * What a call does, in a line a person reads: the command of a shell call (Claude Code `Bash`,
 * Codex `shell` with an argv, `local_shell` actions), else the path or URL it touches, else its
 * arguments as JSON.
 */
export function toolCallSummary(input: unknown): string {
  if (typeof input === 'string') return cut(input);
  if (isRecord(input)) {
    const command = input.command ?? input.cmd;
    if (typeof command === 'string') return cut(command);
    if (Array.isArray(command) && command.every((c) => typeof c === 'string')) {
      // `["bash", "-lc", "<script>"]`: the script is what runs.
      const argv = command as string[];
      const shell = argv.length === 3 && /(^|\/)(ba|z)?sh$/.test(argv[0]!) && argv[1]!.startsWith('-');
      return cut(shell ? argv[2]! : argv.join(' '));
    }
    for (const k of ['file_path', 'path', 'notebook_path', 'url', 'pattern']) {
      const v = input[k];
      if (typeof v === 'string') return cut(v);
    }
  }
  let text: string;
  try {
    text = JSON.stringify(input) ?? '';
  } catch {
    // Only arguments nested past JSON.stringify's stack get here; String() recurses as deep.
    text = '(arguments nested too deep to show)';
  }
  return cut(text);
}

/** The text a client sees instead of a denied call. */
export function blockedMessage(tool: string, input: unknown, rule: string): string {
  return `AI Bridge blocked ${tool}: ${toolCallSummary(input)} (rule ${rule})`;
}
