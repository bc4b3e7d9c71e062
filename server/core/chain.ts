import { createHash } from 'node:crypto';
import type { Interception } from '../../shared/interception';

/** The hash a chain starts from, before the first record. */
export const GENESIS = '0'.repeat(64);

/** JSON with object keys sorted at every level, so a record hashes the same whatever store reorders its keys. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(v as Record<string, unknown>)
    .filter(([, x]) => x !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
}

/** SHA-256 over the previous record's hash and this record (all of it but its own hash). */
export function chainHash(prevHash: string, rec: Omit<Interception, 'hash'> & { hash?: string }): string {
  const { hash: _own, ...rest } = rec;
  return createHash('sha256').update(prevHash).update('\n').update(canonicalJson(rest)).digest('hex');
}

export interface ChainBreak {
  seq: number;
  id: string;
  reason: string;
}

export interface ChainReport {
  ok: boolean;
  /** Records checked. */
  checked: number;
  /** The hash the oldest kept record points back to: the genesis, or the last pruned record's hash. */
  anchor: string | null;
  firstBreak: ChainBreak | null;
}

/**
 * Walks records oldest first and reports the first broken link: an edited record (its hash does
 * not match its content), a deleted one (the next record points back to a hash that is gone), or a
 * reordering (the same). The oldest record is trusted as the anchor, so pruning keeps the chain
 * verifiable.
 */
export async function verifyChain(records: AsyncIterable<Interception>): Promise<ChainReport> {
  let prev: Interception | undefined;
  let checked = 0;
  let anchor: string | null = null;
  for await (const rec of records) {
    checked++;
    if (rec.hash === undefined || rec.prevHash === undefined) {
      // Written before the chain existed: nothing to check, and the chain starts after it.
      prev = undefined;
      continue;
    }
    if (rec.hash !== chainHash(rec.prevHash, rec)) {
      return {
        ok: false,
        checked,
        anchor,
        firstBreak: { seq: rec.seq, id: rec.id, reason: 'content does not match its hash (edited)' },
      };
    }
    if (prev === undefined) anchor ??= rec.prevHash;
    else if (rec.prevHash !== prev.hash) {
      return {
        ok: false,
        checked,
        anchor,
        firstBreak: {
          seq: rec.seq,
          id: rec.id,
          reason: `does not follow record ${prev.seq} (a record was deleted or moved)`,
        },
      };
    } else if (rec.seq <= prev.seq) {
      return { ok: false, checked, anchor, firstBreak: { seq: rec.seq, id: rec.id, reason: 'out of order' } };
    }
    prev = rec;
  }
  return { ok: true, checked, anchor, firstBreak: null };
}
