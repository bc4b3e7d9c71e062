/**
 * A team name (or a budget subject) as policies, budgets and reports match it: spaces at its ends
 * are a typo (`"Platform "` would be a team of its own, outside every rule for `"Platform"`).
 * Spaces inside are kept: a name an identity provider sends with two is matched by rules written
 * with two. `null` for a name of spaces alone: each entry point decides what a blank means (no team
 * from an identity provider, a refusal from the API).
 */
export function trimmedName(name: string): string | null {
  const t = name.trim();
  return t === '' ? null : t;
}
