import { PG_INVISIBLE_CLASS, textSearch, toolForm } from '../search-text';
import type { InterceptionFilter } from '../types';

/** A WHERE clause under construction: conditions and their numbered parameters. */
export class Where {
  readonly params: unknown[] = [];
  private readonly conds: string[] = [];

  /** Adds a condition; `$?` in it stands for the value's parameter. */
  add(cond: string, value: unknown): this {
    // As the columns hold them: a filter with NUL would otherwise be a database error.
    this.params.push(typeof value === 'string' ? pgText(value) : value);
    this.conds.push(cond.replaceAll('$?', `$${this.params.length}`));
    return this;
  }

  get sql(): string {
    return this.conds.length === 0 ? 'TRUE' : this.conds.join(' AND ');
  }
}

/** `%` and `_` are wildcards in LIKE; a search for them means the characters themselves. */
function likeLiteral(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

// NUL, or half of a surrogate pair (a lone one is valid in a JS string, not in UTF-8).
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is one of the characters looked for
const NOT_PG_TEXT = /[\u0000\p{Cs}]/gu;

/**
 * PostgreSQL text and jsonb cannot hold NUL, and jsonb refuses a lone surrogate's escape; a member
 * chooses many strings (session ids, tool call ids, prompts, filters), and one such character
 * would fail a whole batch of records. The copies kept in columns and used for filtering drop NUL
 * and replace a lone surrogate with U+FFFD, as a UTF-8 encoder does; the record's JSON keeps both
 * escaped.
 */
export function pgText(s: string | null): string | null {
  return s === null ? null : s.replace(NOT_PG_TEXT, (c) => (c === '\u0000' ? '' : '\uFFFD'));
}

/** The interception filter as SQL over the `interceptions` columns. */
export function interceptionWhere(f: InterceptionFilter): Where {
  const w = new Where();
  if (f.userId !== undefined) w.add('user_id = $?', f.userId);
  if (f.provider !== undefined) w.add('provider = $?', f.provider);
  if (f.api !== undefined) w.add('api = $?', f.api);
  if (f.model !== undefined) w.add('model = $?', f.model);
  if (f.client !== undefined) w.add('client = $?', f.client);
  if (f.since !== undefined) w.add('started_at >= $?::timestamptz', f.since);
  if (f.until !== undefined) w.add('started_at < $?::timestamptz', f.until);
  if (f.team !== undefined) w.add('team = $?', f.team);
  if (f.sessionId !== undefined) w.add('session_id = $?', f.sessionId);
  // The column holds the names' toolForm (rows from before migration 8, as it folded them).
  if (f.tool !== undefined) w.add('tools @> ARRAY[$?::text]', toolForm(f.tool));
  if (f.status !== undefined) w.add('status = $?', f.status);
  if (f.q !== undefined) {
    // The column holds the prompt's search form (searchForm; rows from before it, the prompt as
    // sent, which ILIKE still matches case-insensitively in ASCII).
    const search = textSearch(f.q);
    w.add(
      search.asStored
        ? `prompt ILIKE '%' || $? || '%'`
        : `regexp_replace(prompt, '[${PG_INVISIBLE_CLASS}]', '', 'g') ILIKE '%' || $? || '%'`,
      likeLiteral(pgText(search.term)!),
    );
  }
  return w;
}
