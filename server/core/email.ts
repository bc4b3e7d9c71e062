/**
 * Characters outside ASCII whose lower case is ASCII: the Kelvin sign (U+212A) lowers to `k`, the
 * dotted capital I (U+0130) to `i` and a combining dot. Emails are matched lower-cased, so an
 * address holding one would land in another person's account (`\u212Aate@…` in `kate@…`'s, an
 * admin's too): such an address is refused wherever a user is created or signs in.
 */
function foldsIntoAscii(email: string): boolean {
  for (const ch of email) {
    if (ch.charCodeAt(0) < 0x80) continue;
    const lower = ch.toLowerCase();
    for (let i = 0; i < lower.length; i++) if (lower.charCodeAt(i) < 0x80) return true;
  }
  return false;
}

/**
 * An email as users are stored and matched by: trimmed, lower case. Undefined for one that would
 * match another person's address in that form (foldsIntoAscii): each caller refuses it in its way.
 */
export function emailKey(raw: string): string | undefined {
  return foldsIntoAscii(raw) ? undefined : raw.trim().toLowerCase();
}
