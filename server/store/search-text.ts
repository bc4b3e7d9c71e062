/**
 * Characters that show as nothing: the soft hyphen, zero-width spaces and joiners, direction marks
 * and embeddings, the word joiner and invisible operators, variation selectors, the byte-order
 * mark, and the tag characters used to hide ASCII text ("ASCII smuggling"). A member could put one
 * inside a word of a prompt (`CONFI\u200BDENTIAL`) and the word would read the same to a person and
 * not match a search for it: the text search leaves them out of both sides.
 */
const BMP_CLASS =
  '\\u00AD\\u034F\\u061C\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u206F\\u3164\\uFE00-\\uFE0F\\uFEFF\\uFFA0';

/** The class body for PostgreSQL's regular expressions. */
export const PG_INVISIBLE_CLASS = `${BMP_CLASS}\\U000E0000-\\U000E007F`;

const INVISIBLE = new RegExp(`[${BMP_CLASS}\\u{E0000}-\\u{E007F}]`, 'gu');

/** A text search (`q`) as both stores run it. */
export interface TextSearch {
  /** The term, lower case, invisible characters left out (unless it is made of nothing else). */
  readonly term: string;
  /**
   * The term is made only of invisible characters: matched as typed against the prompt as stored
   * (left out, it would be empty and match every record; a search for a zero-width or direction
   * character is how hidden text is looked for).
   */
  readonly asStored: boolean;
}

export function textSearch(q: string): TextSearch {
  const visible = q.replace(INVISIBLE, '');
  return visible === ''
    ? { term: q.toLowerCase(), asStored: true }
    : { term: visible.toLowerCase(), asStored: false };
}

/** Whether a prompt holds the search's term. */
export function promptMatches(prompt: string | null, s: TextSearch): boolean {
  if (prompt === null) return false;
  return (s.asStored ? prompt.toLowerCase() : prompt.replace(INVISIBLE, '').toLowerCase()).includes(s.term);
}
