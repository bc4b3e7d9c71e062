import { createHash } from 'node:crypto';
import { isObject, str } from '../common';
import type { JsonObject } from '../wire';

/**
 * Signatures Google documents for a history the client wrote itself: the Gemini CLI puts one on the
 * first call of a turn that came without one. Not the model's, so they say nothing of the turn.
 */
const DUMMY_SIGNATURES = new Set([
  'skip_thought_signature_validator',
  'context_engineering_is_the_way_to_go',
]);

/** A digest of a call's arguments; any too deep to write out (answers have no depth bound) read alike. */
function argsDigest(args: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(args ?? {});
  } catch {
    text = '\u0000too deep';
  }
  return createHash('sha256').update(text).digest('hex');
}

/**
 * The audit ids of one model turn's `functionCall` parts, in order, alike whether read from the
 * answer as it streams or from the same turn in the history the client sends back with the results.
 *
 * generateContent gives its calls no `id`, and clients name them by ids of their own, which the
 * answer never showed (the Gemini CLI: `list_directory_1796398756411_0`, on the result and on the
 * call in its history). So a call is known by what both sides see: its tool's name, its arguments,
 * how many alike came before it in the turn, and the thought signature of the turn's first call
 * (Gemini 3 signs every answer with calls, 2.5 may when thinking; clients must send it back on
 * that same part). Written `<name>#<16 hex digits>`. A model's own id, where one comes, is not
 * used: a client echoes it, but the history cannot tell it from one the client made up.
 */
export class TurnCallIds {
  /** Undefined until the turn's first call is read. */
  private signature: string | null | undefined;
  private readonly alike = new Map<string, number>();

  /** The id of the turn's next `functionCall` part (`part` holds the signature, `call` the rest). */
  next(part: JsonObject, call: JsonObject): string {
    if (this.signature === undefined) {
      const s = str(part.thoughtSignature);
      this.signature = s && !DUMMY_SIGNATURES.has(s) ? s : null;
    }
    const name = str(call.name) ?? 'unknown';
    const args = argsDigest(call.args);
    const key = `${name}\u0000${args}`;
    const n = (this.alike.get(key) ?? 0) + 1;
    this.alike.set(key, n);
    const digest = createHash('sha256')
      .update(JSON.stringify([name, args, n, this.signature]))
      .digest('hex')
      .slice(0, 16);
    return `${name}#${digest}`;
  }
}

/** A non-empty string, else null (Gemini has sent `"id": ""` for no id). */
function nonEmpty(v: unknown): string | null {
  const s = str(v);
  return s === null || s === '' ? null : s;
}

interface HistoryCall {
  auditId: string;
  /** The id the client put on it (its own, or the model's echoed), if any. */
  wireId: string | null;
  name: string | null;
}

/** Queues of calls by a key, each in the turn's order, taken from the front. */
class CallQueues<K> {
  private readonly queues = new Map<K, { calls: HistoryCall[]; next: number }>();

  add(key: K, call: HistoryCall): void {
    const q = this.queues.get(key);
    if (q) q.calls.push(call);
    else this.queues.set(key, { calls: [call], next: 0 });
  }

  /** The audit id of the first call under `key` not yet taken. */
  take(key: K): string | undefined {
    const q = this.queues.get(key);
    return q && q.next < q.calls.length ? q.calls[q.next++]!.auditId : undefined;
  }
}

/**
 * The audit call id of each `functionResponse` in `responses` (in order), pairing each with a call
 * of `modelTurn` (the model's last turn, as the client sends it back): by the id both carry; else,
 * for a call the client gave no id, by the tool's name, in order, among the calls not yet paired.
 * A result paired with none keeps the client's id, or its name.
 */
export function resultCallIds(modelTurn: unknown, responses: readonly JsonObject[]): string[] {
  const calls: HistoryCall[] = [];
  if (isObject(modelTurn) && Array.isArray(modelTurn.parts)) {
    const ids = new TurnCallIds();
    for (const p of modelTurn.parts as unknown[])
      if (isObject(p) && isObject(p.functionCall))
        calls.push({
          auditId: ids.next(p, p.functionCall),
          wireId: nonEmpty(p.functionCall.id),
          name: str(p.functionCall.name),
        });
  }
  // Calls by the id the client put on them, and those without one by their tool's name: found at
  // once, not by a scan of the turn per result (a crafted body of 60,000 calls and as many results
  // compared billions of pairs, blocking the bridge for seconds). A call with an id is only ever
  // paired by it, one without only by its name, so each queue is taken from its front.
  const withId = new CallQueues<string>();
  const byName = new CallQueues<string | null>();
  for (const c of calls) {
    if (c.wireId === null) byName.add(c.name, c);
    else withId.add(c.wireId, c);
  }
  // Ids first, all of them: a result without one must not take the call another result names.
  const byId = responses.map((r) => {
    const id = nonEmpty(r.id);
    return id === null ? undefined : withId.take(id);
  });
  return responses.map((r, i) => {
    const name = str(r.name);
    return byId[i] ?? byName.take(name) ?? nonEmpty(r.id) ?? name ?? '';
  });
}
