import { Type } from '@sinclair/typebox';

/**
 * A point in time a query is bounded by: an ISO 8601 date and time, or a date alone, that day's
 * start in UTC (as `Date.parse` reads it, and as `aibridge keys create --expires-at` does). A date
 * alone is ISO 8601 too, and what people type into `?since=`.
 */
export const Instant = Type.Union([Type.String({ format: 'date-time' }), Type.String({ format: 'date' })]);
