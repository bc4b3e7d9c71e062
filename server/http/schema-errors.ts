import type { FastifySchemaValidationError } from 'fastify/types/schema';

/**
 * Validation errors as a person reads them. Ajv reports a union of literals (`role` is "admin" or
 * "member") as one error per literal plus one for the union: `body/role must be equal to constant,
 * body/role must be equal to constant, body/role must match a schema in anyOf`. Here that is
 * `body/role must be one of "admin", "member"`; an unknown field is named; the rest read as ajv
 * words them, each once.
 */
export function schemaErrorMessage(errors: readonly FastifySchemaValidationError[], dataVar: string): string {
  const byPath = new Map<string, FastifySchemaValidationError[]>();
  for (const e of errors) {
    const list = byPath.get(e.instancePath) ?? [];
    list.push(e);
    byPath.set(e.instancePath, list);
  }
  const out: string[] = [];
  for (const [path, list] of byPath) {
    const where = `${dataVar}${path}`;
    const allowed = list.flatMap((e) =>
      e.keyword === 'const'
        ? [(e.params as { allowedValue?: unknown }).allowedValue]
        : e.keyword === 'enum'
          ? ((e.params as { allowedValues?: unknown[] }).allowedValues ?? [])
          : [],
    );
    // A time that is not one (`2026-11-01 09:00`, `2026-11-01T09`, no offset): say what is taken.
    const formats = list.flatMap((e) =>
      e.keyword === 'format' ? [(e.params as { format?: string }).format] : [],
    );
    if (formats.length > 0 && formats.every((f) => f === 'date-time' || f === 'date')) {
      out.push(
        `${where} must be an ISO 8601 date and time with its offset (2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00)` +
          (formats.includes('date') ? ' or a date alone (2026-11-01, that day’s start, UTC)' : ''),
      );
      continue;
    }
    const rest = list.filter((e) => e.keyword !== 'const' && e.keyword !== 'enum' && e.keyword !== 'anyOf');
    if (allowed.length > 0 && rest.length === 0) {
      out.push(`${where} must be one of ${[...new Set(allowed.map((v) => JSON.stringify(v)))].join(', ')}`);
      continue;
    }
    for (const e of list.length > 1 ? list.filter((x) => x.keyword !== 'anyOf') : list) {
      const extra = (e.params as { additionalProperty?: string }).additionalProperty;
      out.push(
        e.keyword === 'additionalProperties' && extra !== undefined
          ? `${where} has an unknown field "${extra}"`
          : `${where} ${e.message ?? 'is not valid'}`,
      );
    }
  }
  return [...new Set(out)].join(', ');
}
