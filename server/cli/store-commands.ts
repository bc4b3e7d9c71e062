import fs from 'node:fs';
import path from 'node:path';
import { verifyStoredChain } from '../audit/chain-anchor';
import { databaseUrl } from '../config';
import { BackupError, backupDataDir } from '../store/embedded/backup';
import { EmbeddedStore } from '../store/embedded/embedded-store';
import { LATEST_MIGRATION, migrate } from '../store/postgres/migrations';
import { PostgresStore } from '../store/postgres/postgres-store';
import type { DocKind } from '../store/types';
import { CliError } from './admin-client';

/** Every document kind (a Record, so a kind added to DocKind without listing it here fails to compile). */
const DOC_KINDS: Record<DocKind, true> = {
  budget: true,
  rate_limit: true,
  model_policy: true,
  price: true,
  team_capture: true,
  mcp_server: true,
  mcp_credential: true,
  admin_session: true,
  device_grant: true,
  provisioner: true,
  provisioner_use: true,
  oidc_flow: true,
  scim_user: true,
  scim_group: true,
  user_deactivation: true,
  tool_policy: true,
  team_byok: true,
  provider_key: true,
  model_alias: true,
  oauth_client: true,
  oauth_pending: true,
  mcp_oauth_pending: true,
  mcp_oauth_latest: true,
  oauth_code: true,
  oauth_grant: true,
  oauth_access_token: true,
  route_table: true,
};

/** Records per import transaction. */
const COPY_BATCH = 1000;

type Out = (line: string) => void;

function pgUrl(raw: string | undefined, flag: string): string {
  const url = databaseUrl({ AIBRIDGE_DATABASE_URL: raw });
  if (!url)
    throw new CliError(`${flag} (or AIBRIDGE_DATABASE_URL) is required: postgres://user:password@host/db`);
  return url;
}

/** `aibridge migrate`: applies pending schema steps and exits (the bridge also does it at start). */
export async function migrateCommand(rawUrl: string | undefined, out: Out): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: pgUrl(rawUrl, '--database-url') });
  await client.connect();
  try {
    const { applied } = await migrate(client);
    out(
      applied.length === 0
        ? `schema is up to date (step ${LATEST_MIGRATION})`
        : `applied ${applied.map((v) => `step ${v}`).join(', ')}; schema is at step ${LATEST_MIGRATION}`,
    );
  } finally {
    await client.end();
  }
}

/**
 * `aibridge store copy --from <data-dir> --to postgres://...`: moves an embedded deployment into an
 * empty database, records exactly as they were (numbers, chain links, hashes), then verifies the
 * chain there. The bridge must be stopped while it runs: the data dir is read as it is.
 */
export async function copyStore(from: string, to: string, out: Out): Promise<{ records: number }> {
  // Opening a store creates one: a mistyped --from would copy an empty store, report success, and
  // the replicas started on it would have none of the users or keys.
  if (!fs.existsSync(path.join(from, 'db.json')))
    throw new CliError(`${from} holds no embedded store (no db.json there): check --from`);
  const source = new EmbeddedStore({
    dataDir: from,
    onWarning: (w) => out(`warning: ${w.file}: ${w.reason}`),
  });
  const target = new PostgresStore({ url: pgUrl(to, '--to') });
  await source.open();
  try {
    await target.open();
    try {
      const empty =
        (await target.countUsers()) === 0 &&
        (await target.listInterceptions({}, 1)).items.length === 0 &&
        (await target.listAlerts({ limit: 1 })).length === 0;
      if (!empty) throw new CliError('the target database is not empty; copy into a new database');

      const users = await source.listUsers();
      let keys = 0;
      for (const u of users) {
        await target.createUser(u);
        for (const k of await source.listKeys(u.id)) {
          await target.createKey(k);
          keys++;
        }
      }
      let docs = 0;
      for (const kind of Object.keys(DOC_KINDS) as DocKind[]) {
        for (const [id, doc] of source.docEntries(kind)) {
          await target.putDoc(kind, id, doc);
          docs++;
        }
      }
      // Replicas started on the copy are then checked against the secret the keys were hashed with.
      const verifier = source.setting('key_hash_verifier');
      if (verifier !== undefined) await target.claimSetting('key_hash_verifier', verifier);
      const anchor = source.setting('chain_anchor');
      if (anchor !== undefined) await target.claimSetting('chain_anchor', anchor);
      const alerts = (await source.listAlerts({ limit: Number.MAX_SAFE_INTEGER })).reverse();
      for (const a of alerts) await target.appendAlert(a);
      const access = (await source.listAccessLog({ limit: Number.MAX_SAFE_INTEGER })).reverse();
      for (const e of access) await target.appendAccessLog(e);

      let records = 0;
      let batch = [];
      for await (const rec of source.scanInterceptions({})) {
        batch.push(rec);
        if (batch.length === COPY_BATCH) {
          await target.importInterceptions(batch);
          records += batch.length;
          batch = [];
          out(`copied ${records} interceptions`);
        }
      }
      await target.importInterceptions(batch);
      records += batch.length;
      // What retention pruned from the source is gone from its records but not from its spend.
      const pruned = await source.prunedBuckets();
      await target.importBuckets(pruned);

      // MCP gateway calls (docs/mcp.md): audit records outside the chain, copied as they are.
      let gatewayCalls = 0;
      for await (const call of source.scanGatewayCalls({})) {
        await target.appendGatewayCall(call);
        gatewayCalls++;
      }

      // The source's head goes with its records: a tail cut from the source is missing in the
      // copy too, never a shorter chain that verifies.
      await target.importChainHead(await source.chainHead());
      const report = await verifyStoredChain(target);
      if (!report.ok || report.checked !== records) {
        const why = report.truncated
          ? `${report.truncated.missing} records missing at the tail (the source's were cut before the copy)`
          : (report.firstBreak?.reason ?? `${report.checked} of ${records} records`);
        throw new CliError(`the copy does not verify: ${why}; it holds what the source held, break included`);
      }
      out(
        `copied ${users.length} users, ${keys} keys, ${docs} documents, ${alerts.length} alerts, ` +
          `${access.length} access-log entries, ${records} interceptions, ${gatewayCalls} MCP gateway calls` +
          `${pruned.length > 0 ? `, ${pruned.length} rollup buckets of pruned records` : ''}; chain verified`,
      );
      out(
        `keys are checked with ${from}/key-hash.secret (or AIBRIDGE_KEY_HASH_SECRET): give every replica the same file in its data dir, or AIBRIDGE_KEY_HASH_SECRET=base64url:<that file's content>`,
      );
      return { records };
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}

/**
 * `aibridge store backup --data-dir <dir> --to <new dir>`: a copy of the embedded store that opens
 * and verifies as it was, taken while the bridge serves (server/store/embedded/backup.ts). Restore by
 * starting a bridge on the copy (`aibridge serve --data-dir <copy>`).
 */
export async function backupCommand(dataDir: string, to: string, out: Out): Promise<void> {
  if (!fs.existsSync(path.join(dataDir, 'db.json')))
    throw new CliError(`${dataDir} holds no embedded store (no db.json there): check --data-dir`);
  try {
    const { files, bytes } = await backupDataDir(dataDir, to);
    out(
      `backed up ${files} files (${(bytes / 1e6).toFixed(1)} MB) from ${path.resolve(dataDir)} to ${path.resolve(to)}; ` +
        `restore by starting a bridge on it: aibridge serve --data-dir ${path.resolve(to)}`,
    );
  } catch (err) {
    if (err instanceof BackupError) throw new CliError(err.message);
    throw err;
  }
}
