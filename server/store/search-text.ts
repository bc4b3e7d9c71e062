/**
 * Characters that show as nothing: the soft hyphen, zero-width spaces and joiners, direction marks
 * and embeddings, the word joiner and invisible operators, the byte-order mark. A member could put
 * one inside a word of a prompt (`CONFI\u200BDENTIAL`) and the word would read the same to a person
 * and not match a search for it. The text search leaves them out of both sides. As a character
 * class body, for JavaScript (`u` flag) and PostgreSQL's regular expressions alike.
 */
export const INVISIBLE_CLASS =
  '\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFE00-\\uFE0F\\uFEFF\\uFFA0';

const INVISIBLE = new RegExp(`[${INVISIBLE_CLASS}]`, 'gu');

/** Text as the audit search compares it: invisible characters left out, lower case. */
export function searchable(text: string): string {
  return text.replace(INVISIBLE, '').toLowerCase();
}

/** A search term without invisible characters, case kept (for a case-insensitive database match). */
export function visibleOnly(text: string): string {
  return text.replace(INVISIBLE, '');
}
