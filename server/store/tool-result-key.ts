/**
 * The key a tool result is linked to its call by: the call id within its user. Call ids are
 * strings the model or the client chose, or (Gemini) the bridge derived from what anyone can send
 * (gemini/call-ids.ts; older records: the tool's name, `run_shell_command`): keyed by id alone, any
 * member's request carrying a result for such an id, or one of another user's ids, was shown as the
 * result of every other user's call of it. A user id holds no space, so the two parts cannot run
 * into each other.
 */
export function toolResultKey(userId: string, callId: string): string {
  return `${userId} ${callId}`;
}
