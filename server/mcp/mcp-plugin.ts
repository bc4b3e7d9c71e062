import type { Capability, Core } from '../capability';
import { proxyEnv } from '../http/egress-proxy';
import type { StrategyFor } from '../proxy/exchange';
import { McpHub } from './hub';
import type { CallJudge } from './injected-rounds';
import { injectedStrategy } from './injector';
import { mcpRoutes } from './mcp-routes';

export interface McpCapability extends Capability {
  hub: McpHub;
  /** Tool injection as a round strategy for the exchange engine. */
  strategyFor: StrategyFor;
}

/**
 * Central MCP tools (docs/mcp.md): servers are connected in the background, never holding up the
 * start. `judge` is the tool-call policy the injected tools' calls pass before they run.
 */
export async function mcpCapability(core: Core, d: { judge?: CallJudge } = {}): Promise<McpCapability> {
  const { config, store, log, bus, metrics, life } = core;
  const hub = new McpHub({
    settings: config.mcp,
    store,
    log,
    bus,
    env: process.env,
    childEnv: proxyEnv(config.egressProxy),
  });
  life.onClose('MCP connections', () => hub.close());
  await hub.start();
  return {
    hub,
    strategyFor: injectedStrategy(
      hub,
      { maxRounds: config.mcp.maxRounds, metrics, ...(d.judge ? { judge: d.judge } : {}) },
      new Set(config.mcp.injectSkipClients),
    ),
    routes: mcpRoutes(hub),
    reload: {
      mcp_credential: () => hub.reloadCredentials(),
      mcp_server: () => hub.reloadServers(),
    },
  };
}
