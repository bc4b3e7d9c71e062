import type { Config } from '../config';
import type { Log } from '../core/log';
import { EmbeddedStore } from './embedded/embedded-store';
import type { Store } from './types';

/**
 * The store the config selects: PostgreSQL when AIBRIDGE_DATABASE_URL is set, else the embedded
 * store. The PostgreSQL driver is loaded only then (idle RSS, docs/performance.md).
 */
export async function createStore(
  config: Config,
  log: Log,
  onLost?: (reason: string) => void,
): Promise<Store> {
  if (config.databaseUrl !== undefined) {
    const { PostgresStore } = await import('./postgres/postgres-store');
    return new PostgresStore({
      url: config.databaseUrl,
      queueLimit: config.auditQueueLimit,
      // As the embedded store's: 10 ms by default with AIBRIDGE_AUDIT_ACK=sent, 0 with stored.
      auditSyncMs: config.auditSyncMs,
      // The pg error carries no password; the URL is never logged.
      onError: (err, context) =>
        log.error(
          { err: { message: err.message, code: (err as { code?: string }).code } },
          `database: ${context}`,
        ),
    });
  }
  return new EmbeddedStore({
    dataDir: config.dataDir,
    auditSyncMs: config.auditSyncMs,
    onWarning: (w) => log.warn({ file: w.file, offset: w.offset }, `journal: ${w.reason}`),
    onLockLost: (reason) => {
      log.error(
        { dataDir: config.dataDir, reason },
        'another process holds the data dir now: this bridge writes nothing more to it and stops',
      );
      onLost?.(reason);
    },
  });
}
