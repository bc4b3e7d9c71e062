import type { InterceptionFilter } from '../types';

/** A WHERE clause under construction: conditions and their numbered parameters. */
export class Where {
  readonly params: unknown[] = [];
  private readonly conds: string[] = [];

  /** Adds a condition; `$?` in it stands for the value's parameter. */
  add(cond: string, value: unknown): this {
    this.params.push(value);
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

/** PostgreSQL text cannot hold NUL; the copies used for filtering drop it (the record keeps it). */
export function pgText(s: string | null): string | null {
  return s === null ? null : s.replaceAll('\u0000', '');
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
  if (f.tool !== undefined) w.add('tools @> ARRAY[$?::text]', f.tool);
  if (f.status !== undefined) w.add('status = $?', f.status);
  if (f.q !== undefined) w.add(`prompt ILIKE '%' || $? || '%'`, likeLiteral(pgText(f.q)!));
  return w;
}
