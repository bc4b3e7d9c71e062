import type { Exchange, RoundStrategy, StrategyFor } from '../proxy/exchange';
import type { McpHub } from './hub';
import { InjectedRounds, type LoopDeps, prepareRound } from './injected-rounds';

/**
 * The proxy's seam to MCP: once a metered request is admitted, a request whose wire API can take
 * tools, from a user with tools to offer and a client not in `skipClients`, runs as
 * {@link InjectedRounds}; every other request is relayed as it is.
 */
export function injectedStrategy(
  hub: McpHub,
  loop: LoopDeps,
  skipClients: ReadonlySet<string> = new Set(),
): StrategyFor {
  // Synchronous for a request that gets no tools (no servers, or not an API that takes them): only
  // opening an MCP session is waited for.
  return (x: Exchange): RoundStrategy | undefined | Promise<RoundStrategy | undefined> => {
    const { api, body, start } = x.metered;
    const injection = api.injection;
    if (!injection || !hub.hasServers || !injection.accepts(body)) return undefined;
    // A client that lists the gateway as its own MCP server (VS Code) runs these tools itself.
    if (skipClients.has(start.client)) return undefined;
    return hub.sessionFor(start.principal, injection.clientToolNames(body)).then((session) => {
      if (!session) return undefined;
      const offered = injection.offer(body, session.tools);
      x.first.prepared = prepareRound(api, offered, x.metered.prepared.captureOutput, x.metered.target);
      return new InjectedRounds(session, injection, offered, loop);
    });
  };
}
