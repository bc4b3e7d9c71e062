import type { Interception } from '../../../shared/interception';
import { pgArray } from './pg-array';
import { itemsColumn, promptColumn, responseIdColumn, toolsColumn } from './record-batch';

/**
 * Rows an older bridge wrote into a newer schema. During a rolling upgrade the old replicas keep
 * writing after the first new one has migrated (and after a downgrade, an old one writes on), and
 * they fill the columns later steps added or changed as their own version did: tool names as sent
 * where the `tool` filter compares folded ones (step 8), no stored-item owners (step 9). Such a
 * record was found by no `tool=` search, ever. Step 10 gives every row the bridge does not write
 * itself `stale = true` (the column's default: an older bridge does not name it); a current replica
 * writes those columns again from the record, which every version stored whole.
 */

/** Rows repaired per transaction: the rows stay locked for its length. */
export const REPAIR_CHUNK = 500;

/** The next rows to repair, locked; rows another replica is repairing are skipped. */
export const STALE_ROWS = `SELECT seq, record FROM interceptions WHERE stale ORDER BY seq LIMIT ${REPAIR_CHUNK}
  FOR UPDATE SKIP LOCKED`;

/**
 * One statement writing the rows' derived columns again from their records. A record that does
 * not parse (or not as a record) keeps its columns (verify reports it) and stops being stale, so it
 * is not read again every round. A column the record cannot fill (an older record without output item ids) keeps
 * what the row had.
 */
export function repairStatement(rows: readonly { seq: string; record: string }[]): {
  text: string;
  values: unknown[];
} {
  const seqs: string[] = [];
  const tools: (string | null)[] = [];
  const prompts: (string | null)[] = [];
  const ids: (string | null)[] = [];
  const items: (string | null)[] = [];
  const parsed: boolean[] = [];
  for (const row of rows) {
    seqs.push(row.seq);
    // A record that does not parse, or not as a record (a tool call without a name): its columns
    // stay, and it must not stop the rows after it from being repaired.
    let columns: [string, string | null, string | null, string | null] | undefined;
    try {
      const rec = JSON.parse(row.record) as Interception;
      columns = [toolsColumn(rec), promptColumn(rec), responseIdColumn(rec), itemsColumn(rec)];
    } catch {
      columns = undefined;
    }
    parsed.push(columns !== undefined);
    tools.push(columns?.[0] ?? null);
    prompts.push(columns?.[1] ?? null);
    ids.push(columns?.[2] ?? null);
    items.push(columns?.[3] ?? null);
  }
  return {
    text: `UPDATE interceptions AS i SET
        tools = CASE WHEN t.ok THEN ARRAY(SELECT jsonb_array_elements_text(t.tools)) ELSE i.tools END,
        prompt = CASE WHEN t.ok THEN t.prompt ELSE i.prompt END,
        response_id = COALESCE(t.response_id, i.response_id),
        response_items = CASE WHEN t.items IS NULL THEN i.response_items
          ELSE ARRAY(SELECT jsonb_array_elements_text(t.items)) END,
        stale = false
      FROM unnest($1::bigint[], $2::boolean[], $3::jsonb[], $4::text[], $5::text[], $6::jsonb[])
        AS t(seq, ok, tools, prompt, response_id, items)
     WHERE i.seq = t.seq`,
    values: [seqs, parsed, tools, prompts, ids, items].map((a) => pgArray(a)),
  };
}
