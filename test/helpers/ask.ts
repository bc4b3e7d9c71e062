/** What a small Messages request got back: its status, its body read whole, and its headers. */
export interface Asked {
  status: number;
  body: string;
  headers: Headers;
}

/** A one-line Messages request (non-streamed) through a bridge at `baseUrl` with a bridge key. */
export async function askMessages(baseUrl: string, key: string): Promise<Asked> {
  const res = await fetch(`${baseUrl}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'claude-sonnet-4-6',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'hi' }],
    }),
  });
  return { status: res.status, body: await res.text(), headers: res.headers };
}
