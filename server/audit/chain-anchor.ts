import {
  anchorJson,
  type ChainAnchor,
  type ChainHead,
  type ChainReport,
  parseAnchor,
  verifyChain,
} from '../core/chain';
import type { ColumnAtOdds, Store } from '../store/types';

/**
 * Stores where the audit chain starts, if the store has no such record yet: the oldest chained
 * record's link (or the head, with none), trusted as it is found on this first start. From then on
 * only pruning moves it (the stores do so before they delete), so records deleted from the start
 * of the chain are reported by verify rather than taken for retention's work.
 */
export async function claimChainAnchor(store: Store): Promise<void> {
  if ((await store.getSetting('chain_anchor')) !== undefined) return;
  await store.claimSetting('chain_anchor', anchorJson(await firstAnchor(store)));
}

async function firstAnchor(store: Store): Promise<ChainAnchor> {
  for await (const rec of store.scanInterceptions({})) {
    if (rec.hash === undefined || rec.prevHash === undefined) continue;
    return { afterSeq: rec.seq - 1, hash: rec.prevHash };
  }
  const head = await store.chainHead();
  return { afterSeq: head.seq, hash: head.hash };
}

/** Checks of a chain whose start keeps moving under them, at most: each prune moves it once. */
const VERIFY_ATTEMPTS = 5;

/**
 * The whole chain checked against the store's head and start. The head is read first: records
 * appended during the scan are past it, never reported missing. A prune during the scan moves the
 * start (replicas prune at start-up and hourly, and a long verify can see several): a break found
 * while the start moved is checked again against the new one, a few times. `kept`: a head an admin
 * kept outside the bridge earlier; the record at its place must still have its hash.
 */
export async function verifyStoredChain(store: Store, kept: ChainHead | null = null): Promise<ChainReport> {
  const head = await store.chainHead();
  for (let attempt = 1; ; attempt++) {
    const stored = await store.getSetting('chain_anchor');
    let odd: ColumnAtOdds | undefined;
    const report = await verifyChain(
      store.scanForVerify ? store.scanForVerify((at) => (odd ??= at)) : store.scanInterceptions({}),
      head,
      parseAnchor(stored),
      kept,
      // PostgreSQL moves its head with each batch, in the batch's transaction; the embedded store
      // writes its head a moment after the journal.
      store.kind === 'postgres' ? () => store.chainHead() : undefined,
    );
    if (report.ok || attempt >= VERIFY_ATTEMPTS || (await store.getSetting('chain_anchor')) === stored)
      return report.ok && odd ? columnsAtOdds(report, odd) : report;
  }
}

/**
 * A chain that verifies, with a searchable column kept beside a record (PostgreSQL) at odds with
 * it: the columns are outside the hash, and rewritten they would move a record out of an
 * incident's search or into another member's list while every hash still holds.
 */
function columnsAtOdds(report: ChainReport, odd: ColumnAtOdds): ChainReport {
  return {
    ...report,
    ok: false,
    firstBreak: {
      seq: odd.seq,
      id: odd.id,
      reason: `its ${odd.column} column does not say what its record says (changed behind the bridge's back)`,
    },
  };
}
