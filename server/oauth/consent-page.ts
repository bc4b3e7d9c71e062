/**
 * The page `GET /oauth/authorize` sends the browser to (`/oauth/consent?request=…`): no inline
 * script, the admin page's CSP, no data of its own. It signs the user in the ways the bridge
 * already has (SSO, else a bridge key exchanged for the admin page's session), names the
 * application asking, and sends the answer with the session cookie and the CSRF header.
 */
export const CONSENT_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AI Bridge: authorize an MCP client</title>
<script src="/oauth/consent/consent.js" defer></script>
</head>
<body>
<main>
<h1>Authorize an MCP client</h1>
<p id="who">Checking your sign-in…</p>
<section id="sign-in" hidden>
<p id="sso-offer" hidden><a id="sso-link" href="/api/v1/auth/oidc/login">Sign in</a></p>
<form id="key-form" hidden>
<label for="key">Or sign in with your bridge key</label>
<input id="key" type="password" autocomplete="off" spellcheck="false">
<button type="submit">Sign in</button>
</form>
</section>
<section id="confirm" hidden>
<p><strong id="client-name"></strong> asks to use the AI Bridge MCP gateway as you:
the tools of your organisation's MCP servers, with your credentials, recorded as your calls.</p>
<dl>
<dt>Returns you to</dt><dd id="client-return"></dd>
<dt>Resource</dt><dd id="client-resource"></dd>
</dl>
<p>Approve only if you started this from that application yourself, just now.</p>
<button type="button" id="approve">Approve</button>
<button type="button" id="deny">Deny</button>
</section>
<p id="result" role="status"></p>
</main>
</body>
</html>
`;

export const CONSENT_SCRIPT = `'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const show = (id, on) => { $(id).hidden = !on; };
  const say = (text) => { $('result').textContent = text; };
  async function call(method, path, body) {
    const res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: Object.assign({ 'x-aibridge-csrf': '1' }, body ? { 'content-type': 'application/json' } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await res.json().catch(() => ({}));
    return { status: res.status, body: json };
  }
  const request = new URLSearchParams(location.search).get('request') || '';
  const here = '/oauth/consent?request=' + encodeURIComponent(request);
  async function answer(approve) {
    const r = await call('POST', '/api/v1/oauth/requests/' + encodeURIComponent(request), { approve });
    show('confirm', false);
    if (r.status !== 200) { say((r.body.error && r.body.error.message) || 'Error ' + r.status); return; }
    say(approve ? 'Approved: returning you to the application.' : 'Denied: returning you to the application.');
    location.assign(r.body.redirectTo);
  }
  async function signInWithKey(ev) {
    ev.preventDefault();
    const r = await call('POST', '/api/v1/session', { key: $('key').value });
    if (r.status !== 201) { say((r.body.error && r.body.error.message) || 'Error ' + r.status); return; }
    location.assign(here);
  }
  async function start() {
    const me = await call('GET', '/api/v1/me');
    if (me.status !== 200) {
      $('who').textContent = 'Sign in to continue.';
      show('sign-in', true);
      const auth = await call('GET', '/api/v1/auth/config');
      const sso = auth.status === 200 && auth.body.sso;
      if (sso) {
        $('sso-link').textContent = 'Sign in with ' + sso.displayName;
        $('sso-link').href = sso.loginUrl + '?returnTo=' + encodeURIComponent(here);
        show('sso-offer', true);
      }
      if (auth.status === 200 && auth.body.keySignIn) {
        show('key-form', true);
        $('key-form').addEventListener('submit', signInWithKey);
      }
      return;
    }
    $('who').textContent = 'Signed in as ' + me.body.user.email + '.';
    const r = await call('GET', '/api/v1/oauth/requests/' + encodeURIComponent(request));
    if (r.status !== 200) { say((r.body.error && r.body.error.message) || 'Error ' + r.status); return; }
    $('client-name').textContent = r.body.clientName;
    const back = new URL(r.body.redirectUri);
    $('client-return').textContent = back.origin + back.pathname;
    $('client-resource').textContent = r.body.resource;
    show('confirm', true);
    $('approve').addEventListener('click', () => answer(true));
    $('deny').addEventListener('click', () => answer(false));
  }
  start();
})();
`;
