import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ProviderAdapter } from '../providers/types';
import type { Exchange, Metered, ProxyDeps, ToolInjector } from '../proxy/forward';
import type { McpHub } from './hub';
import { InjectedExchange, type LoopDeps, prepareRound } from './loop';

/**
 * The proxy's seam to MCP: a metered request whose wire API can take tools, from a user with tools
 * to offer, becomes an {@link InjectedExchange}; every other request is relayed as it is.
 */
export class McpInjector implements ToolInjector {
  constructor(
    private readonly hub: McpHub,
    private readonly loop: LoopDeps,
  ) {}

  async exchange(
    adapter: ProviderAdapter,
    deps: ProxyDeps,
    req: FastifyRequest,
    reply: FastifyReply,
    metered: Metered,
  ): Promise<Exchange | undefined> {
    const injection = metered.api.injection;
    if (!injection || !this.hub.hasServers || !injection.accepts(metered.body)) return undefined;
    const session = await this.hub.sessionFor(
      metered.start.principal,
      injection.clientToolNames(metered.body),
    );
    if (!session) return undefined;
    const offered = injection.offer(metered.body, session.tools);
    metered.prepared = prepareRound(metered.api, offered, metered.prepared.captureOutput);
    return new InjectedExchange(adapter, deps, req, reply, metered, session, injection, offered, this.loop);
  }
}
