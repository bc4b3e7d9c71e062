/**
 * Characters outside ASCII whose lower case is ASCII: the Kelvin sign (U+212A) lowers to `k`, the
 * dotted capital I (U+0130) to `i` and a combining dot. Emails are matched lower-cased, so an
 * address holding one would land in another person's account (`\u212Aate@…` in `kate@…`'s, an
 * admin's too): such an address is refused wherever a user is created or signs in.
 */
export function foldsIntoAscii(email: string): boolean {
  for (const ch of email) {
    if (ch.charCodeAt(0) < 0x80) continue;
    const lower = ch.toLowerCase();
    for (let i = 0; i < lower.length; i++) if (lower.charCodeAt(i) < 0x80) return true;
  }
  return false;
}
