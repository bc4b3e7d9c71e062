import type { Capability, Core } from '../capability';
import { datesOf } from '../clock';
import type { IdentityService } from '../identity/identity-service';
import type { PriceBook } from '../spend/prices';
import { auditRoutes } from './audit-routes';
import { cacheBreakRoutes } from './cache-break-routes';
import { CapturePolicy } from './capture';
import { claimChainAnchor } from './chain-anchor';
import { Recorder } from './recorder';
import { Redactor } from './redact';
import { RESPONSE_RECHECK_MS, ResponseOwners } from './response-owners';
import { ScanPlaces } from './scan-places';

export interface AuditCapability extends Capability {
  recorder: Recorder;
  capture: CapturePolicy;
  /** Who created each stored provider response, from the records (docs/security.md). */
  responseOwners: ResponseOwners;
}

/** The audit trail (docs/audit.md): the recorder every exchange hands its rounds to, capture levels, retention, the audit API. */
export async function auditCapability(
  core: Core,
  identity: IdentityService,
  prices: PriceBook,
): Promise<AuditCapability> {
  const { config, store, log, metrics, clock, life } = core;
  const recorder = new Recorder(
    store,
    log,
    prices,
    metrics,
    { failMode: config.auditFailure, retryMs: 1000, retryLimit: config.auditQueueLimit },
    new Redactor(config.redactPatterns),
  );
  // With several replicas, an owner another replica has not told yet gets a second look.
  const responseOwners = new ResponseOwners(store, { recheckMs: store.shared ? RESPONSE_RECHECK_MS : 0 });
  // Noted as each interception ends, before the client's answer does: a follow-up finds it here.
  recorder.onFinished((rec) => responseOwners.note(rec));
  // And as soon as a stream names it: a client may continue it on `response.completed`, before
  // the provider closes the stream and the interception finishes.
  recorder.onResponseNamed((userId, id, items) => responseOwners.noteNamed(userId, id, items));
  if (store.shared) {
    // The other replicas hear of each response as this one notes it (docs/security.md).
    responseOwners.shareWith((id, userId, items, contested) =>
      store.broadcast({
        kind: 'response',
        id,
        userId,
        ...(items ? { items } : {}),
        ...(contested ? { contested } : {}),
      }),
    );
    const unwatch = store.watch((change) => {
      if (change.kind === 'response')
        responseOwners.heard(change.id, change.userId, change.items, change.contested);
      else if (change.kind === 'peers') responseOwners.setPeers(change.present);
    });
    life.onClose('response owners', unwatch);
  }
  // Registered before the routes close, so every record of the last requests is flushed.
  life.onClose('audit records', () => recorder.drain());
  const capture = new CapturePolicy(store, config.auditCapture);
  await capture.load();

  await claimChainAnchor(store);
  // Retention runs beside traffic: the embedded store drops whole old segments, the database deletes rows.
  if (config.auditRetentionDays > 0) {
    // While it runs, the cutoff moves with the time that has passed (monotonic), not with a wall
    // clock that jumped ahead (a VM's clock stepped forward, a mis-set clock): a jump of 40 days
    // under 30-day retention deleted every record. A clock that stepped back only prunes less.
    const startWall = clock.now();
    const startMono = performance.now();
    let warned = false;
    const prune = (): void => {
      const wall = clock.now();
      const now = retentionNow(wall, startWall, performance.now() - startMono);
      if (wall - now > 3_600_000 && !warned) {
        warned = true;
        log.warn(
          { aheadMs: Math.round(wall - now) },
          'retention: the wall clock jumped ahead while the bridge ran; records are pruned by the time that has passed since it started until it restarts',
        );
      }
      const before = new Date(now - config.auditRetentionDays * 86_400_000).toISOString();
      store
        .pruneInterceptions(before)
        .then((n) => n > 0 && log.info({ records: n, before }, 'retention: pruned old interceptions'))
        .catch((err: unknown) => log.error({ err }, 'retention: prune failed'));
      // Keys dead (revoked or expired) before the window: no record kept can name one. Without
      // it, keys minted per workspace start (a TTL each) piled up for good, in memory on the
      // embedded store.
      store
        .pruneKeys(before)
        .then(
          (n) =>
            n > 0 &&
            log.info({ keys: n, before }, 'retention: deleted keys revoked or expired before the window'),
        )
        .catch((err: unknown) => log.error({ err }, 'retention: deleting old keys failed'));
      // MCP gateway calls (docs/mcp.md) are audit records too: the same window.
      store
        .pruneGatewayCalls(before)
        .then((n) => n > 0 && log.info({ records: n, before }, 'retention: pruned old MCP gateway calls'))
        .catch((err: unknown) => log.error({ err }, 'retention: pruning MCP gateway calls failed'));
    };
    prune();
    const timer = setInterval(prune, 3_600_000);
    timer.unref();
    life.onClose('retention', () => clearInterval(timer));
  }
  return {
    recorder,
    capture,
    responseOwners,
    routes: async (app) => {
      const places = new ScanPlaces();
      await app.register(auditRoutes(identity, store, capture, places));
      await app.register(cacheBreakRoutes(store, datesOf(clock), places));
    },
    reload: { team_capture: () => capture.load() },
  };
}

/**
 * The time retention prunes against: the wall clock, but no further than the bridge's start plus
 * the time that has passed since (monotonic), so a wall clock that jumps ahead prunes nothing more.
 */
export function retentionNow(wall: number, startWall: number, elapsedMs: number): number {
  return Math.min(wall, startWall + elapsedMs);
}
