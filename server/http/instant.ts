import { Type } from '@sinclair/typebox';

/**
 * A point in time a query is bounded by: an ISO 8601 date and time, or a date alone, that day's
 * start in UTC (as `Date.parse` reads it, and as `aibridge keys create --expires-at` does). A date
 * alone is ISO 8601 too, and what people type into `?since=`.
 */
export const Instant = Type.Union([Type.String({ format: 'date-time' }), Type.String({ format: 'date' })]);

type FormatCheck = RegExp | ((s: string) => boolean) | { validate: RegExp | ((s: string) => boolean) };

/** Whether `s` passes one of ajv's format definitions (a pattern, a function, or either inside `validate`). */
function passes(check: FormatCheck | undefined, s: string): boolean {
  const v = check !== undefined && typeof check === 'object' && 'validate' in check ? check.validate : check;
  if (v instanceof RegExp) return v.test(s);
  return typeof v === 'function' ? v(s) : true;
}

/**
 * Ajv's `date-time` with what a JavaScript date can hold: RFC 3339 allows a leap second
 * (`23:59:60`), which `Date` cannot represent, so a query bounded by one reached `toISOString()`
 * as an invalid date and answered 500. It is a 400 with the usual message now. Runs on fastify's
 * Ajv after ajv-formats has added its own (`onCreate`).
 */
export function strictDateTime(ajv: {
  formats: Record<string, unknown>;
  addFormat: (name: string, f: { type: 'string'; validate: (s: string) => boolean }) => unknown;
}): void {
  const prior = ajv.formats['date-time'] as FormatCheck | undefined;
  ajv.addFormat('date-time', {
    type: 'string',
    validate: (s) => passes(prior, s) && !Number.isNaN(Date.parse(s)),
  });
}
