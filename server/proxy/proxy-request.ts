import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import type { Principal } from '../core/principal';

/**
 * What a metered exchange reads of its request. A fastify request is one; so is the provider
 * lane's (server/proxy/provider-lane.ts), which serves metered calls without going through fastify.
 */
export interface ProxyRequest {
  readonly method: string;
  readonly headers: IncomingHttpHeaders;
  readonly raw: IncomingMessage;
  /** The client's address, behind trusted proxies (docs/security.md). */
  readonly ip: string;
  readonly id: string;
  readonly log: FastifyBaseLogger;
  body: unknown;
  principal: Principal | null;
  interceptionId: string | null;
}

/** What a metered exchange does with its response: it writes the raw response itself. */
export interface ProxyReply {
  readonly raw: ServerResponse;
  /** Tells fastify the handler writes the response itself (a no-op off fastify). */
  hijack(): unknown;
}
