import type { Interception } from '../../../shared/interception';
import { addToBuckets, type UsageBucket } from '../../core/rollup';
import { searchForm, toolForm } from '../search-text';
import { toolResultKey } from '../tool-result-key';
import { pgArray } from './pg-array';
import { pgText } from './sql-filter';

/** What an array parameter's elements may be. */
type Element = string | number | boolean | null | undefined;

/** Numbered parameters for one statement assembled from parts. */
class Params {
  readonly values: unknown[] = [];
  add(v: unknown): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
}

/**
 * The columns a record's search and ownership checks read, derived from the record: the batch
 * writes them, and `repairStatement` (stale-rows.ts) writes them again for rows an older bridge
 * wrote. The tool names in the form the tool filter compares (JSON, for a jsonb[] parameter).
 */
export const toolsColumn = (r: Interception): string =>
  JSON.stringify([...new Set((r.toolCalls ?? []).map((t) => toolForm(pgText(t.name)!)))]);
/** The prompt as `q` searches it. */
export const promptColumn = (r: Interception): string | null =>
  pgText(r.prompt === null || r.prompt === undefined ? null : searchForm(r.prompt));
/** The id of a stored answer (its owner is the record's user). */
export const responseIdColumn = (r: Interception): string | null => pgText(r.responseId ?? null);
/** The ids of a stored answer's output items (JSON, for a jsonb[] parameter). */
export const itemsColumn = (r: Interception): string | null =>
  r.responseItems ? JSON.stringify(r.responseItems.map((i) => pgText(i))) : null;

/** Where the chain goes: from `from` (checked, when given) to the batch's last record. */
export interface HeadMove {
  to: { seq: number; hash: string };
  /** The head the batch was linked to. Given: the statement writes nothing unless the head is still there. */
  from?: { seq: number; hash: string };
}

/** A bucket row met again (`INSERT INTO usage_buckets AS u …`): its counts summed. */
export const BUCKET_SUMS = `ON CONFLICT (hour, user_id, provider, model, client) DO UPDATE SET
      requests = u.requests + EXCLUDED.requests,
      input = u.input + EXCLUDED.input,
      output = u.output + EXCLUDED.output,
      cache_read = u.cache_read + EXCLUDED.cache_read,
      cache_write = u.cache_write + EXCLUDED.cache_write,
      reasoning = u.reasoning + EXCLUDED.reasoning,
      cost_usd = u.cost_usd + EXCLUDED.cost_usd,
      unpriced_requests = u.unpriced_requests + EXCLUDED.unpriced_requests,
      user_billed_cost_usd = u.user_billed_cost_usd + EXCLUDED.user_billed_cost_usd,
      user_billed_requests = u.user_billed_requests + EXCLUDED.user_billed_requests`;

/**
 * One statement that writes a linked batch of records: the chain head moved, the records inserted,
 * the rollups, the users' last request times and the tool-result index updated. Every part waits
 * on the head's update (`WHERE EXISTS (SELECT 1 FROM head)`), so when `move.from` is given and
 * another replica moved the head meanwhile, nothing is written and the statement answers n = 0;
 * otherwise n = 1. One round trip where it took eight (docs/performance.md). `json`: each record
 * as stored.
 */
export function batchStatement(
  recs: Interception[],
  json: string[],
  move: HeadMove,
): { name: string; text: string; values: unknown[] } {
  const p = new Params();
  const moved = 'WHERE EXISTS (SELECT 1 FROM head)';
  const parts: string[] = [];
  const guard = move.from ? ` WHERE seq = ${p.add(move.from.seq)} AND hash = ${p.add(move.from.hash)}` : '';
  parts.push(
    `head AS (UPDATE chain_head SET seq = ${p.add(move.to.seq)}, hash = ${p.add(move.to.hash)}${guard} RETURNING 1)`,
  );

  const arr = (values: readonly Element[]): string => p.add(pgArray(values));
  const col = (f: (r: Interception) => Element): string => arr(recs.map(f));
  // Stored JSON holds no raw newline (JSON escapes it), so a batch's records go as one text the
  // database splits: their quotes need no escaping, which was most of building a batch's values.
  const joined = !json.some((j) => j.includes('\n'));
  const lines = joined ? `string_to_array(${p.add(json.join('\n'))}, E'\\n')` : `${arr(json)}::text[]`;
  parts.push(`ins AS (INSERT INTO interceptions
      (seq, id, user_id, team, provider, api, model, client, session_id, status, started_at, tools, prompt,
       response_id, response_items, record, stale)
    SELECT t.seq, t.id, t.user_id, t.team, t.provider, t.api, t.model, t.client, t.session_id, t.status,
           t.started_at, ARRAY(SELECT jsonb_array_elements_text(t.tools)), t.prompt, t.response_id,
           CASE WHEN t.items IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(t.items)) END,
           t.record, false
      FROM unnest(${col((r) => r.seq)}::bigint[], ${col((r) => r.id)}::text[], ${col((r) => r.userId)}::text[],
                  ${col((r) => pgText(r.team))}::text[], ${col((r) => r.provider)}::text[], ${col((r) => r.api)}::text[],
                  ${col((r) => pgText(r.model))}::text[], ${col((r) => pgText(r.client))}::text[], ${col((r) => pgText(r.sessionId))}::text[],
                  ${col((r) => r.status)}::text[], ${col((r) => r.startedAt)}::timestamptz[],
                  ${col(toolsColumn)}::jsonb[], ${col(promptColumn)}::text[],
                  ${col(responseIdColumn)}::text[], ${col(itemsColumn)}::jsonb[],
                  ${lines})
        AS t(seq, id, user_id, team, provider, api, model, client, session_id, status, started_at, tools, prompt,
             response_id, items, record)
     ${moved})`);

  // Summed per bucket first: one upsert may not touch a row twice.
  const sums = new Map<string, UsageBucket>();
  const lastAt = new Map<string, number>();
  for (const r of recs) {
    const at = Date.parse(r.startedAt);
    if (!(at <= (lastAt.get(r.userId) ?? Number.NEGATIVE_INFINITY))) lastAt.set(r.userId, at);
    addToBuckets(sums, r);
  }
  const bs = [...sums.values()];
  const bcol = (f: (b: UsageBucket) => Element): string => arr(bs.map(f));
  parts.push(`roll AS (INSERT INTO usage_buckets AS u
      (hour, user_id, provider, model, client, model_is_null, user_email, team, requests,
       input, output, cache_read, cache_write, reasoning, cost_usd, unpriced_requests,
       user_billed_cost_usd, user_billed_requests)
    SELECT * FROM unnest(${bcol((b) => b.hour)}::timestamptz[], ${bcol((b) => b.userId)}::text[],
                         ${bcol((b) => b.provider)}::text[], ${bcol((b) => b.model ?? '')}::text[],
                         ${bcol((b) => pgText(b.client))}::text[], ${bcol((b) => b.model === null)}::boolean[],
                         ${bcol((b) => pgText(b.userEmail))}::text[], ${bcol((b) => pgText(b.team))}::text[],
                         ${bcol((b) => b.requests)}::bigint[], ${bcol((b) => b.usage.input)}::bigint[],
                         ${bcol((b) => b.usage.output)}::bigint[], ${bcol((b) => b.usage.cacheRead)}::bigint[],
                         ${bcol((b) => b.usage.cacheWrite)}::bigint[], ${bcol((b) => b.usage.reasoning)}::bigint[],
                         ${bcol((b) => b.costUsd)}::float8[], ${bcol((b) => b.unpricedRequests)}::bigint[],
                         ${bcol((b) => b.userBilledCostUsd)}::float8[], ${bcol((b) => b.userBilledRequests)}::bigint[])
     ${moved}
    ${BUCKET_SUMS})`);

  // In user order, so replicas writing batches of the same users lock their rows in one order.
  const last = [...lastAt].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  parts.push(`last AS (INSERT INTO user_last_request AS l (user_id, last_at)
    SELECT * FROM unnest(${arr(last.map((e) => e[0]))}::text[],
                         ${arr(last.map((e) => new Date(e[1]).toISOString()))}::timestamptz[])
     ${moved}
    ON CONFLICT (user_id) DO UPDATE SET last_at = GREATEST(l.last_at, EXCLUDED.last_at))`);

  // The newest report of a call wins, as later records overwrite earlier ones.
  const byCall = new Map<string, { at: string; isError: boolean; interceptionId: string }>();
  for (const r of recs)
    for (const t of r.toolResults ?? [])
      byCall.set(pgText(toolResultKey(r.userId, t.callId))!, {
        at: r.startedAt,
        isError: t.isError,
        interceptionId: r.id,
      });
  if (byCall.size > 0) {
    const e = [...byCall];
    parts.push(`results AS (INSERT INTO tool_results (call_id, at, is_error, interception_id)
      SELECT * FROM unnest(${arr(e.map((x) => x[0]))}::text[], ${arr(e.map((x) => x[1].at))}::text[],
                           ${arr(e.map((x) => x[1].isError))}::boolean[],
                           ${arr(e.map((x) => x[1].interceptionId))}::text[])
       ${moved}
      ON CONFLICT (call_id) DO UPDATE SET at = EXCLUDED.at, is_error = EXCLUDED.is_error,
        interception_id = EXCLUDED.interception_id)`);
  }
  // Named: each connection parses and plans the statement once per shape (guarded or not, with tool
  // results or not, records joined or as an array), not once per batch; the text depends on nothing
  // else, batch sizes included.
  return {
    name: `aibridge_batch_${move.from ? 'g' : 'u'}${byCall.size > 0 ? 'r' : ''}${joined ? '' : 'a'}`,
    text: `WITH ${parts.join(',\n')}\nSELECT count(*)::int AS n FROM head`,
    values: p.values,
  };
}
