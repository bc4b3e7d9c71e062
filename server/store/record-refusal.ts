/**
 * Whether a store's error says the record itself cannot be stored, whatever the store's state:
 * PostgreSQL's SQLSTATE classes 22 (data exception: a value the column cannot hold) and 23
 * (integrity constraint violation). Not an outage, a full disk (class 53) or a lost connection:
 * those pass, and the record is retried until they do.
 */
export function isRecordRefusal(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
}
