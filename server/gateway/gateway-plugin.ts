import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import type { CaptureLevel } from '../../shared/interception';
import { Redactor } from '../audit/redact';
import type { Core } from '../capability';
import type { Authenticator } from '../identity/auth';
import type { McpHub } from '../mcp/hub';
import type { RateLimiter } from '../spend/rate-limits';
import { GatewayCallLog } from './call-log';
import { CallSlots } from './call-slots';
import { type GatewayAccessTokens, gatewayRoutes } from './gateway-routes';
import { type GatewayServerDeps, InFlightCalls } from './in-flight';

export interface GatewayCapability {
  /** `/mcp` and its RFC 9728 metadata, registered beside the provider routes (outside `/api`). */
  plugin: FastifyPluginAsync;
  /** Calls running on this replica (tests check that cancelled ones are gone). */
  inFlight: InFlightCalls;
}

/** The MCP gateway (docs/mcp.md#the-mcp-gateway): the central MCP servers as one MCP server per user. */
export function gatewayCapability(
  core: Core,
  d: {
    auth: Authenticator;
    hub: McpHub;
    limiter: Pick<RateLimiter, 'admit' | 'settle'>;
    judge?: GatewayServerDeps['judge'];
    accessTokens?: GatewayAccessTokens;
    capture?: { levelFor(team: string | null): CaptureLevel };
    /** How often an open notification stream's key is checked again (default 30 s). */
    recheckMs?: number;
    /** Members' changes, paced (an OAuth start a `connect` call makes is one). */
    writes?: GatewayServerDeps['writes'];
  },
): GatewayCapability {
  const { config, store, metrics, bus, log, clock, life } = core;
  const slots = new CallSlots(config.mcp.gatewayCallsPerUser, () => clock.now());
  if (store.shared && config.mcp.gatewayCallsPerUser > 0) {
    // Replicas add up each user's running calls, so the cap is one across them (docs/mcp.md).
    const replica = randomUUID();
    const stopSharing = slots.share((counts) => store.broadcast({ kind: 'gateway', replica, counts }));
    const unwatch = store.watch((change) => {
      if (change.kind === 'gateway' && change.replica !== replica) slots.heard(change.replica, change.counts);
    });
    life.onClose('gateway call sharing', () => {
      unwatch();
      stopSharing();
    });
  }
  const inFlight = new InFlightCalls((n) => metrics.gatewayInFlight.set(n));
  const callLog = new GatewayCallLog({
    store,
    metrics,
    bus,
    log,
    redactor: new Redactor(config.redactPatterns),
    ...(d.capture ? { captureFor: (team: string | null) => d.capture!.levelFor(team) } : {}),
  });
  return {
    inFlight,
    plugin: gatewayRoutes({
      auth: d.auth,
      limiter: d.limiter,
      hub: d.hub,
      log: callLog,
      inFlight,
      slots,
      callTimeoutMs: config.mcp.gatewayCallTimeoutMs,
      now: () => clock.now(),
      ...(d.judge ? { judge: d.judge } : {}),
      publicUrl: config.mcp.publicUrl,
      maxJsonDepth: config.limits.maxJsonDepth,
      maxJsonContainers: config.limits.maxJsonContainers,
      ...(d.accessTokens ? { accessTokens: d.accessTokens } : {}),
      ...(d.recheckMs ? { recheckMs: d.recheckMs } : {}),
      changes: (listener) => store.watch(listener),
      ...(d.writes ? { writes: d.writes } : {}),
    }),
  };
}
