import { anchorJson, type ChainAnchor, type ChainReport, parseAnchor, verifyChain } from '../core/chain';
import type { Store } from '../store/types';

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

/**
 * The whole chain checked against the store's head and start. The head is read first: records
 * appended during the scan are past it, never reported missing. A prune between reading the start
 * and the scan moves the start: then it is checked once more against the new one.
 */
export async function verifyStoredChain(store: Store): Promise<ChainReport> {
  const head = await store.chainHead();
  for (let attempt = 0; ; attempt++) {
    const stored = await store.getSetting('chain_anchor');
    const report = await verifyChain(store.scanInterceptions({}), head, parseAnchor(stored));
    if (report.ok || attempt > 0 || (await store.getSetting('chain_anchor')) === stored) return report;
  }
}
