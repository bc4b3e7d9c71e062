import { type Redaction, Redactor } from '../audit/redact';
import { BridgeError } from '../errors';
import type { RequestFacts } from '../providers/types';

/**
 * The longest model name the bridge accepts, in bytes. Real ids are far shorter (the longest are
 * Bedrock ARNs, about 120); the name becomes a map key, a metric label, a log field and a record
 * field, so a member must not be able to make it megabytes.
 */
export const MAX_MODEL_BYTES = 256;
/** The longest session id kept; a longer one is dropped (Claude Code's `metadata.user_id` is ~150). */
export const MAX_SESSION_ID_CHARS = 256;
/**
 * The longest tool call id kept in a tool result; a longer one becomes `''`. Providers' ids are
 * ~30 characters (`toolu_…`, `call_…`); the id is a record field and keys the store's result index.
 */
export const MAX_CALL_ID_CHARS = 256;

/**
 * What model ids are made of, across providers: `claude-sonnet-4-5`, `us.anthropic.claude-sonnet-4-6-v1:0`,
 * `arn:aws:bedrock:…:inference-profile/…`, `models/gemini-2.5-pro`, `ft:gpt-4o:org::id`,
 * `claude-3-5-sonnet@20240620`, `qwen2.5-coder:7b`, `~anthropic/claude-sonnet-latest`. No spaces,
 * quotes, control characters or anything a log line, a metric label or a URL would need escaped.
 */
const MODEL_NAME = /^[A-Za-z0-9._:/@+~-]+$/;

const builtIn = new Redactor();

/**
 * Checks and bounds the strings a member chose that the bridge keeps (the model name, the session
 * id, the call ids of tool results), before anything is recorded or keyed by them: a bad model name
 * is refused with `invalid_model`; an id too long to be one is dropped; all pass through redaction,
 * as prompts do, since they reach maps, logs, metrics and usage reports.
 */
export function checkedRequestFacts(facts: RequestFacts, redactor: Redactor = builtIn): RequestFacts {
  const { model, sessionId } = facts;
  if (model !== null) {
    // `.` and `..` would be path segments where a provider puts the model in the URL (Bedrock's
    // `/model/{id}/invoke`), leaving it for another path under the instance's base.
    if (
      model.length === 0 ||
      model.length > MAX_MODEL_BYTES ||
      !MODEL_NAME.test(model) ||
      model === '.' ||
      model === '..'
    ) {
      throw new BridgeError(
        'invalid_model',
        model.length > MAX_MODEL_BYTES
          ? `The model name is ${model.length} characters long; the bridge accepts at most ${MAX_MODEL_BYTES}.`
          : 'The model name must be 1 to 256 letters, digits or . _ - : / @ + ~ characters, and not `.` or `..`.',
      );
    }
  }
  const found: Redaction[] = [];
  const checked: RequestFacts = {
    ...facts,
    model: model === null ? null : redactor.text(model, 'model', found),
    sessionId:
      sessionId === null || sessionId.length > MAX_SESSION_ID_CHARS
        ? null
        : redactor.text(sessionId, 'sessionId', found),
    toolResults: facts.toolResults.map((r, i) => ({
      ...r,
      callId:
        r.callId.length > MAX_CALL_ID_CHARS ? '' : redactor.text(r.callId, `toolResults[${i}].callId`, found),
    })),
  };
  // Listed in the record with its own: a search for records that held a key finds these too.
  if (found.length > 0) checked.redactions = found;
  return checked;
}
