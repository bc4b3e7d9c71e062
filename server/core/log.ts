/**
 * The logging the lower layers need, as a shape: fastify's (pino) logger fits it, and the store,
 * the event bus and the core never import fastify to get one.
 */
export interface Log {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}
