import { isObject } from '../common';
import { openaiErrorBody } from '../openai/errors';

/**
 * Azure's content filter refuses a prompt with a 400 whose `error` carries Azure's own fields
 * (`status`, `innererror.content_filter_result`). OpenAI clients read `{error: {message, type,
 * param, code}}`: give them that, keeping `code: "content_filter"` so they can tell it apart.
 */
export function contentFilterBody(status: number, body: Buffer): Buffer | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(json) || !isObject(json.error)) return undefined;
  const e = json.error;
  const inner = isObject(e.innererror) ? e.innererror : undefined;
  if (e.code !== 'content_filter' && inner?.code !== 'ResponsibleAIPolicyViolation') return undefined;
  const message =
    typeof e.message === 'string' ? e.message : 'The request was refused by the content filter.';
  const out = openaiErrorBody(status, 'content_filter', message) as { error: Record<string, unknown> };
  out.error.param = typeof e.param === 'string' ? e.param : 'prompt';
  return Buffer.from(JSON.stringify(out));
}
