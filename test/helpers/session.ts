import assert from 'node:assert/strict';

/**
 * A key sign-in as the admin page sends it: `POST /api/v1/session` with the key and the CSRF
 * header a signed-in browser must send. `headers` adds to what it sends (an `origin`, say).
 */
export function keySignIn(
  baseUrl: string,
  key: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${baseUrl}/api/v1/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-aibridge-csrf': '1', ...headers },
    body: JSON.stringify({ key }),
  });
}

/** Signs in with `key`, which must be accepted (201), and returns the session as a `Cookie` request header. */
export async function sessionCookie(baseUrl: string, key: string): Promise<string> {
  const res = await keySignIn(baseUrl, key);
  assert.equal(res.status, 201, await res.text());
  return (res.headers.get('set-cookie') ?? '').split(';')[0]!;
}
