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

/**
 * The form a prompt and a search term are compared in: compatibility forms folded (NFKC: fullwidth
 * `ＣＯＮＦＩＤＥＮＴＩＡＬ`, ligatures, an accent typed as its own combining character or composed
 * with its letter all read as their plain spelling), then lower case, as JavaScript folds it for
 * every script. PostgreSQL keeps this form in its `prompt` column, so its search does not depend on
 * the database's collation (under `C`, `ILIKE` folded only ASCII: `été` did not find `Été`).
 * Invisible characters are kept: a term made only of them looks for them.
 */
export function searchForm(s: string): string {
  // ASCII is its own NFKC form, and ICU's pass is slow on long text (~380 µs for a 64 KB prompt,
  // on the PostgreSQL store's record path; ~50 µs with this check).
  return NOT_ASCII.test(s) ? s.normalize('NFKC').toLowerCase() : s.toLowerCase();
}

const NOT_ASCII = /[\u0080-\uffff]/;

/**
 * A tool name as the `tool` filter compares it, on both stores: its search form (`searchForm`), so
 * `bash` finds Claude Code's `Bash` and `BASH` finds `bash`, and a fullwidth or ligature spelling
 * reads as its plain one, as the text search does. Whole names only: `rea` does not find `Read`.
 */
export function toolForm(name: string): string {
  return searchForm(name);
}

/**
 * Whether a tool call's name is the one a `tool` filter asks for (letter case aside). The filter is
 * folded once here, not again for every call an export or a listing scans.
 */
export function toolMatcher(filter: string): (name: string) => boolean {
  const folded = toolForm(filter);
  return (name) => name === filter || toolForm(name) === folded;
}

/** A text search (`q`) as both stores run it. */
export interface TextSearch {
  /** The term in its search form, invisible characters left out (unless it is made of nothing else). */
  readonly term: string;
  /**
   * The term is made only of invisible characters: matched as typed against the prompt as stored
   * (left out, it would be empty and match every record; a search for a zero-width or direction
   * character is how hidden text is looked for).
   */
  readonly asStored: boolean;
}

export function textSearch(q: string): TextSearch {
  const folded = searchForm(q);
  const visible = folded.replace(INVISIBLE, '');
  return visible === '' ? { term: folded, asStored: true } : { term: visible, asStored: false };
}

/**
 * Whether a tool call's arguments hold the search's term: in one of their strings (a shell command,
 * a path, a query), compared as the text search compares a prompt. Keys and numbers are not
 * searched, nor a term across two strings. Arguments a record kept none of (capture `none`) match
 * nothing.
 */
export function argumentsMatch(input: unknown, s: TextSearch): boolean {
  if (typeof input === 'string') return promptMatches(input, s);
  if (typeof input !== 'object' || input === null) return false;
  for (const v of Array.isArray(input) ? input : Object.values(input)) if (argumentsMatch(v, s)) return true;
  return false;
}

/** Whether a prompt holds the search's term. */
export function promptMatches(prompt: string | null, s: TextSearch): boolean {
  if (prompt === null) return false;
  const folded = searchForm(prompt);
  return (s.asStored ? folded : folded.replace(INVISIBLE, '')).includes(s.term);
}
