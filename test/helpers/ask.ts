/** What a small Messages request got back: its status, its body read whole, and its headers. */
export interface Asked {
  status: number;
  body: string;
  headers: Headers;
}

/** What a test may choose of the one-turn request; the rest is as below. */
export interface Turn {
  model?: string;
  max_tokens?: number;
  stream?: boolean;
  /** The user's one message. */
  prompt?: string;
  /** The provider instance's path prefix (default `anthropic`). */
  instance?: string;
}

/**
 * A one-line Messages request (non-streamed unless asked) through a bridge at `baseUrl`. `credential`
 * is a bridge key, sent as `x-api-key`, or the headers that carry the credentials when a test is
 * about how they are sent (a Bearer token; a bridge key beside the user's own upstream key).
 */
export async function askMessages(
  baseUrl: string,
  credential: string | Record<string, string>,
  turn: Turn = {},
): Promise<Asked> {
  const sent = typeof credential === 'string' ? { 'x-api-key': credential } : credential;
  const res = await fetch(`${baseUrl}/${turn.instance ?? 'anthropic'}/v1/messages`, {
    method: 'POST',
    headers: { ...sent, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({
      model: turn.model ?? 'claude-sonnet-4-6',
      max_tokens: turn.max_tokens ?? 50,
      ...(turn.stream ? { stream: true } : {}),
      messages: [{ role: 'user', content: turn.prompt ?? 'hi' }],
    }),
  });
  return { status: res.status, body: await res.text(), headers: res.headers };
}
