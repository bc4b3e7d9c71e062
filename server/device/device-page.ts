import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { pageSecurityHeaders } from '../admin/assets';

/**
 * The verification page a device sign-in sends people to (`GET /device`, RFC 8628
 * `verification_uri`): no inline script, the admin page's CSP. It holds no data; what it shows
 * comes from `/api/v1/auth/device` with the admin page's session cookie.
 */
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AI Bridge: sign in a device</title>
<script src="/device/device.js" defer></script>
</head>
<body>
<main>
<h1>Sign in a device</h1>
<p id="who">Checking your sign-in…</p>
<section id="sign-in" hidden>
<p id="sso-offer" hidden><a id="sso-link" href="/api/v1/auth/oidc/login">Sign in</a></p>
<p>Or sign in on the <a href="/admin" id="admin-link">admin page</a> first, then open this page again.</p>
</section>
<section id="enter" hidden>
<label for="user-code">Code shown on the device</label>
<input id="user-code" autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="20">
<button type="button" id="lookup">Continue</button>
</section>
<section id="confirm" hidden>
<p>A device is asking for a key of yours:</p>
<dl>
<dt>Device</dt><dd id="device-name"></dd>
<dt>From address</dt><dd id="device-address"></dd>
<dt>Asked at</dt><dd id="device-created"></dd>
<dt id="device-return-label" hidden>Then returns you to</dt><dd id="device-return" hidden></dd>
</dl>
<p>Approve only if you started this sign-in yourself, just now.</p>
<button type="button" id="approve">Approve</button>
<button type="button" id="deny">Deny</button>
</section>
<p id="result" role="status"></p>
</main>
</body>
</html>
`;

const SCRIPT = `'use strict';
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
  const code = () => $('user-code').value.trim();
  let redirect = null;
  async function lookup() {
    say('');
    const r = await call('GET', '/api/v1/auth/device?userCode=' + encodeURIComponent(code()));
    if (r.status !== 200) { show('confirm', false); say((r.body.error && r.body.error.message) || 'Error ' + r.status); return; }
    $('device-name').textContent = r.body.deviceName;
    $('device-address').textContent = r.body.clientAddress || 'unknown';
    $('device-created').textContent = new Date(r.body.createdAt).toLocaleString();
    redirect = r.body.redirectUri || null;
    $('device-return').textContent = redirect ? redirect.split('?')[0] : '';
    show('device-return', !!redirect);
    show('device-return-label', !!redirect);
    show('confirm', true);
  }
  async function answer(approve) {
    const r = await call('POST', '/api/v1/auth/device/approve', { userCode: code(), approve });
    show('confirm', false);
    if (r.status !== 200) { say((r.body.error && r.body.error.message) || 'Error ' + r.status); return; }
    show('enter', false);
    if (approve && redirect) {
      say('Approved: returning you to your editor. You can close this page.');
      location.assign(redirect);
      return;
    }
    say(approve ? 'Approved: the device is signed in. You can close this page.' : 'Denied: the device gets no key.');
  }
  async function start() {
    const me = await call('GET', '/api/v1/me');
    const given = new URLSearchParams(location.search).get('user_code');
    if (me.status !== 200) {
      $('who').textContent = 'You are not signed in.';
      show('sign-in', true);
      const auth = await call('GET', '/api/v1/auth/config');
      const sso = auth.status === 200 && auth.body.sso;
      if (!sso) return;
      // Back here, code filled in, once the identity provider has signed the user in.
      const back = '/device' + (given ? '?user_code=' + encodeURIComponent(given) : '');
      const login = sso.loginUrl + '?returnTo=' + encodeURIComponent(back);
      $('sso-link').textContent = 'Sign in with ' + sso.displayName;
      $('sso-link').href = login;
      show('sso-offer', true);
      // A device that sent the user here with its code (an editor's Sign In) wants the provider at once.
      if (given) location.assign(login);
      return;
    }
    $('who').textContent = 'Signed in as ' + me.body.user.email + '.';
    show('enter', true);
    $('lookup').addEventListener('click', lookup);
    $('approve').addEventListener('click', () => answer(true));
    $('deny').addEventListener('click', () => answer(false));
    if (given) { $('user-code').value = given; await lookup(); }
  }
  start();
})();
`;

function secured(reply: FastifyReply): FastifyReply {
  return pageSecurityHeaders(reply).header('cache-control', 'no-cache');
}

/** `GET /device` and its script. Public: the page holds nothing; every call it makes is authenticated. */
export const devicePage: FastifyPluginAsync = async (app) => {
  const config = { access: 'public' as const };
  app.get('/device', { config }, async (_req, reply) =>
    secured(reply).type('text/html; charset=utf-8').send(PAGE),
  );
  app.get('/device/device.js', { config }, async (_req, reply) =>
    secured(reply).type('text/javascript; charset=utf-8').send(SCRIPT),
  );
};
