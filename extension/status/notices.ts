import type { PolicyDecision } from '../model/bridge-model';

/**
 * Text shown literally in a VS Code notification. Notifications turn `[label](command:…)`,
 * `(https://…)` and `(file:…)` into links, and command links run when clicked with whatever
 * arguments the link carries; a zero-width space between `]` and `(` keeps the text as it reads
 * but is no link (src/vs/base/common/linkedText.ts needs the two adjacent).
 */
export function plainNotificationText(s: string): string {
  return s.replace(/\]\(/g, ']\u200b(');
}

/**
 * The notification for a tool call a policy denied. The summary is the command or arguments the
 * model wrote, so a prompt-injected model could otherwise put a command link in front of the user.
 */
export function policyNotice(p: Pick<PolicyDecision, 'tool' | 'rule' | 'summary'>): string {
  const what = p.summary.trim() || p.tool;
  return plainNotificationText(`AI Bridge blocked: ${what} (${p.rule})`);
}
