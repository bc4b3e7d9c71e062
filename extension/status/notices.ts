import { plainNotificationText } from '../format';
import type { PolicyDecision } from '../model/bridge-model';

/**
 * The notification for a tool call a policy denied. The summary is the command or arguments the
 * model wrote, so a prompt-injected model could otherwise put a command link in front of the user.
 */
export function policyNotice(p: Pick<PolicyDecision, 'tool' | 'rule' | 'summary'>): string {
  const what = p.summary.trim() || p.tool;
  return plainNotificationText(`AI Bridge blocked: ${what} (${p.rule})`);
}
