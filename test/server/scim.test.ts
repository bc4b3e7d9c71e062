import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import Anthropic from '@anthropic-ai/sdk';
import { loadConfig } from '../../server/config';
import type { CreatedKey, User } from '../../shared/identity';
import { entra, okta } from '../fixtures/scim/idp-requests';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { liveClient } from '../helpers/live-client';
import { testPostgres } from '../helpers/postgres';
import { sessionCookie } from '../helpers/session';

const SCIM_TOKEN = randomBytes(32).toString('base64url');
const ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';
const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

interface ScimAnswer<T = Record<string, unknown>> {
  status: number;
  contentType: string | null;
  body: T;
}

/** A SCIM call as an identity provider makes it: its bearer token, `application/scim+json`. */
async function scim<T = Record<string, unknown>>(
  base: string,
  method: string,
  route: string,
  body?: unknown,
  token: string | null = SCIM_TOKEN,
): Promise<ScimAnswer<T>> {
  const headers: Record<string, string> = { accept: 'application/scim+json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/scim+json';
  const res = await fetch(`${base}/scim/v2${route}`, {
    method,
    headers,
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    body: (text ? JSON.parse(text) : undefined) as T,
  };
}

async function ask(base: string, key: string): Promise<void> {
  const client = new Anthropic({ apiKey: key, baseURL: `${base}/anthropic`, maxRetries: 0 });
  const msg = await client.messages.create({
    model: 'claude-sonnet-4-6',
    max_tokens: 50,
    messages: [{ role: 'user', content: 'hello from a provisioned user' }],
  });
  assert.equal(msg.content[0]?.type, 'text');
}

async function refused(base: string, key: string): Promise<number> {
  try {
    await ask(base, key);
  } catch (err) {
    if (err instanceof Anthropic.APIError) return err.status ?? 0;
    throw err;
  }
  return 200;
}

async function issueKey(tb: TestBridge, email: string): Promise<CreatedKey> {
  const k = await tb.api<CreatedKey>(
    'POST',
    `/api/v1/users/${encodeURIComponent(email)}/keys`,
    tb.adminKey,
    {},
  );
  assert.equal(k.status, 201, JSON.stringify(k.body));
  return k.body;
}

async function userByEmail(tb: TestBridge, email: string): Promise<User> {
  const list = await tb.api<{ items: User[] }>('GET', '/api/v1/users', tb.adminKey);
  const u = list.body.items.find((x) => x.email === email);
  assert.ok(u, `no user ${email}`);
  return u;
}

for (const storeKind of ['embedded', 'postgres'] as const) {
  describe(`SCIM 2.0 provisioning and deprovisioning (${storeKind} store)`, function () {
    this.timeout(60_000);
    let upstream: AnthropicMock;
    let tb: TestBridge;

    before(async () => {
      upstream = await new AnthropicMock().start();
      const env: Record<string, string> = {
        AIBRIDGE_SCIM_TOKEN: SCIM_TOKEN,
        AIBRIDGE_GROUP_TEAMS: JSON.stringify({ 'Test SCIMv2': 'platform', displayName: 'data' }),
        AIBRIDGE_OIDC_ADMIN_GROUP: 'bridge-admins',
        AIBRIDGE_MCP_CREDENTIALS_KEY: randomBytes(32).toString('base64'),
      };
      if (storeKind === 'postgres')
        env.AIBRIDGE_DATABASE_URL = await (await testPostgres()).createDatabase('scim');
      tb = await startBridge(upstream.url, env);
    });
    after(async () => {
      await tb?.close();
      await upstream?.stop();
    });

    it('a deactivated user keeps their own MCP server tokens for a return; a deleted one has them deleted', async () => {
      const put = await tb.api('PUT', '/api/v1/mcp/servers/wiki', tb.adminKey, {
        transport: { type: 'http', url: 'http://127.0.0.1:1/mcp' },
        auth: { type: 'per_user' },
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      const made = await scim<{ id: string }>(tb.url, 'POST', '/Users', {
        ...okta.createUser,
        userName: 'leaver@okta.local',
        externalId: 'leaver-1',
        emails: [{ primary: true, value: 'leaver@okta.local', type: 'work' }],
      });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      const stays = await tb.addUser('stays@okta.local');
      for (const key of [(await issueKey(tb, 'leaver@okta.local')).key, stays.key])
        assert.equal(
          (await tb.api('PUT', '/api/v1/me/mcp/wiki/credentials', key, { token: 'ghp_own' })).status,
          204,
        );
      const holders = async () =>
        (await tb.bridge.store.listDocs<{ userId: string }>('mcp_credential')).map((d) => d.userId).sort();
      const both = [made.body.id, stays.user.id].sort();
      assert.deepEqual(await holders(), both);

      assert.equal((await scim(tb.url, 'PATCH', `/Users/${made.body.id}`, okta.deactivate)).status, 200);
      assert.deepEqual(await holders(), both, 'deactivation keeps them');
      assert.equal((await scim(tb.url, 'DELETE', `/Users/${made.body.id}`)).status, 204);
      assert.deepEqual(await holders(), [stays.user.id], "deletion removes the leaver's, no one else's");
      assert.equal((await tb.api('DELETE', '/api/v1/mcp/servers/wiki', tb.adminKey)).status, 204);
    });

    it("Okta's documented requests: find, create, PUT, deactivate and reactivate by PATCH, DELETE", async () => {
      const none = await scim<{ totalResults: number; Resources: unknown[] }>(
        tb.url,
        'GET',
        `/Users?${okta.findUserQuery}`,
      );
      assert.equal(none.status, 200);
      assert.match(none.contentType ?? '', /^application\/scim\+json/);
      assert.equal(none.body.totalResults, 0);

      const created = await scim<{ id: string; userName: string; active: boolean; externalId: string }>(
        tb.url,
        'POST',
        '/Users',
        okta.createUser,
      );
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.match(created.body.id, /^usr_/);
      assert.equal(created.body.userName, 'test.user@okta.local');
      assert.equal(created.body.externalId, '00ujl29u0le5T6Aj10h7');
      assert.equal(created.body.active, true);
      // A userName that lower-cases into another's address (the Kelvin sign) is refused.
      const kelvin = await scim<{ status: string; scimType?: string }>(tb.url, 'POST', '/Users', {
        ...okta.createUser,
        userName: 'test.user@o\u212Ata.local',
        externalId: 'kelvin',
      });
      assert.equal(kelvin.status, 400, JSON.stringify(kelvin.body));
      const id = created.body.id;
      const bridgeUser = await userByEmail(tb, 'test.user@okta.local');
      assert.equal(bridgeUser.id, id, 'the SCIM id is the bridge user id');
      assert.equal(bridgeUser.name, 'Test User');

      const found = await scim<{ totalResults: number; Resources: { id: string }[] }>(
        tb.url,
        'GET',
        `/Users?${okta.findUserQuery}`,
      );
      assert.equal(found.body.totalResults, 1);
      assert.equal(found.body.Resources[0]?.id, id);

      const again = await scim(tb.url, 'POST', '/Users', okta.createUser);
      assert.equal(again.status, 409);
      assert.equal(again.body.scimType, 'uniqueness');

      const put = await scim<{ displayName: string }>(tb.url, 'PUT', `/Users/${id}`, okta.putUser(id));
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.equal(put.body.displayName, 'Another Excellent User');
      assert.equal((await userByEmail(tb, 'test.user@okta.local')).name, 'Another Excellent User');

      const key = await issueKey(tb, 'test.user@okta.local');
      await ask(tb.url, key.key);
      const off = await scim<{ active: boolean }>(tb.url, 'PATCH', `/Users/${id}`, okta.deactivate);
      assert.equal(off.status, 200, JSON.stringify(off.body));
      assert.equal(off.body.active, false);
      assert.equal(await refused(tb.url, key.key), 401);
      const listed = await scim<{ Resources: { active: boolean }[] }>(
        tb.url,
        'GET',
        `/Users?${okta.findUserQuery}`,
      );
      assert.equal(listed.body.Resources[0]?.active, false, 'a deactivated user is still listed, inactive');

      const on = await scim<{ active: boolean }>(tb.url, 'PATCH', `/Users/${id}`, okta.reactivate);
      assert.equal(on.body.active, true);
      assert.equal(await refused(tb.url, key.key), 401, 'a key revoked by deactivation stays revoked');
      await ask(tb.url, (await issueKey(tb, 'test.user@okta.local')).key);

      const del = await scim(tb.url, 'DELETE', `/Users/${id}`);
      assert.equal(del.status, 204);
      assert.equal((await scim(tb.url, 'GET', `/Users/${id}`)).status, 404);
      const gone = await scim<{ totalResults: number }>(tb.url, 'GET', `/Users?${okta.findUserQuery}`);
      assert.equal(gone.body.totalResults, 0);
      assert.ok(
        (await userByEmail(tb, 'test.user@okta.local')).deactivatedAt,
        'kept, deactivated, for the audit trail',
      );

      // Assigned again: the same bridge user comes back, active.
      const back = await scim<{ id: string; active: boolean }>(tb.url, 'POST', '/Users', okta.createUser);
      assert.equal(back.status, 201);
      assert.equal(back.body.id, id);
      assert.equal(back.body.active, true);
    });

    it("Entra ID's documented requests: create (userName not an email), query, update, disable, enable, DELETE", async () => {
      const created = await scim<{ id: string; emails: { value: string }[] }>(
        tb.url,
        'POST',
        '/Users',
        entra.createUser,
      );
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const id = created.body.id;
      const email = 'test_user_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com';
      assert.equal(created.body.emails[0]?.value, email, 'the primary work email is the bridge email');
      assert.equal((await userByEmail(tb, email)).name, 'givenName familyName');

      const q = await scim<{ totalResults: number; Resources: { id: string; userName: string }[] }>(
        tb.url,
        'GET',
        `/Users?filter=${encodeURIComponent(entra.findUserFilter)}`,
      );
      assert.equal(q.body.totalResults, 1);
      assert.equal(q.body.Resources[0]?.id, id);
      assert.equal(q.body.Resources[0]?.userName, entra.createUser.userName);
      const zero = await scim<{ totalResults: number; Resources: unknown[] }>(
        tb.url,
        'GET',
        `/Users?filter=${encodeURIComponent(entra.noUserFilter)}`,
      );
      assert.equal(zero.status, 200);
      assert.equal(zero.body.totalResults, 0);
      assert.deepEqual(zero.body.Resources, []);

      const updated = await scim(tb.url, 'PATCH', `/Users/${id}`, entra.updateUser);
      assert.equal(updated.status, 200, JSON.stringify(updated.body));

      const key = await issueKey(tb, email);
      await ask(tb.url, key.key);
      const off = await scim<{ active: boolean }>(tb.url, 'PATCH', `/Users/${id}`, entra.disable);
      assert.equal(off.status, 200);
      assert.equal(off.body.active, false);
      assert.equal(await refused(tb.url, key.key), 401);
      const on = await scim<{ active: boolean }>(tb.url, 'PATCH', `/Users/${id}`, entra.enable);
      assert.equal(on.body.active, true);
      await ask(tb.url, (await issueKey(tb, email)).key);

      assert.equal((await scim(tb.url, 'DELETE', `/Users/${id}`)).status, 204);
      assert.equal((await scim(tb.url, 'GET', `/Users/${id}`)).status, 404);
    });

    it('PATCH reads attributes named as paths inside a value, qualified with the core schema URN, or as a one-entry list', async () => {
      const email = 'qualified@testuser.com';
      const created = await scim<{ id: string }>(tb.url, 'POST', '/Users', {
        ...entra.createUser,
        externalId: 'qualified-ext',
        userName: 'Qualified_User',
        emails: [{ primary: true, type: 'work', value: email }],
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const route = `/Users/${created.body.id}`;
      const key = await issueKey(tb, email);

      const renamed = await scim(tb.url, 'PATCH', route, entra.replaceAttributes);
      assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
      assert.equal((await userByEmail(tb, email)).name, 'Renamed User');
      const added = await scim(tb.url, 'PATCH', route, entra.addSingleValue);
      assert.equal(added.status, 200, JSON.stringify(added.body));
      assert.equal((await userByEmail(tb, email)).name, 'Added Name');
      await ask(tb.url, key.key);

      // RFC 7644 §3.10: any attribute may be named with its schema's URN. A deactivation so named
      // was answered 200 and left the user active, keys working.
      const off = await scim<{ active: boolean }>(tb.url, 'PATCH', route, {
        schemas: [PATCH_OP],
        Operations: [
          { op: 'Replace', path: 'urn:ietf:params:scim:schemas:core:2.0:User:active', value: 'False' },
        ],
      });
      assert.equal(off.status, 200, JSON.stringify(off.body));
      assert.equal(off.body.active, false);
      assert.equal(await refused(tb.url, key.key), 401);
      const on = await scim<{ active: boolean }>(tb.url, 'PATCH', route, {
        schemas: [PATCH_OP],
        Operations: [
          { op: 'replace', value: { 'urn:ietf:params:scim:schemas:core:2.0:User': { active: true } } },
        ],
      });
      assert.equal(on.status, 200, JSON.stringify(on.body));
      assert.equal(on.body.active, true);
      assert.equal((await userByEmail(tb, email)).deactivatedAt, null);
    });

    it('deactivation revokes keys and admin sessions and closes live sockets with 4001 at once; reactivation needs a new key', async () => {
      const created = await scim<{ id: string }>(tb.url, 'POST', '/Users', {
        ...okta.createUser,
        userName: 'leaver@okta.local',
        emails: [{ primary: true, value: 'leaver@okta.local', type: 'work' }],
        externalId: '00uleaver',
      });
      assert.equal(created.status, 201);
      const key = await issueKey(tb, 'leaver@okta.local');
      await ask(tb.url, key.key);
      const cookie = await sessionCookie(tb.url, key.key);
      const socket = liveClient(tb.url, { key: key.key });
      await socket.next('hello');

      const t0 = Date.now();
      const off = await scim(tb.url, 'PATCH', `/Users/${created.body.id}`, okta.deactivate);
      assert.equal(off.status, 200);
      const closed = await Promise.race([
        socket.closed,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('socket still open after 5 s')), 5000),
        ),
      ]);
      assert.equal(closed.code, 4001);
      // The heartbeat is 30 s: only the immediate re-check closes it this fast.
      assert.ok(Date.now() - t0 < 5000);

      const me = await fetch(`${tb.url}/api/v1/me`, { headers: { authorization: `Bearer ${key.key}` } });
      assert.equal(me.status, 401);
      const meBySession = await fetch(`${tb.url}/api/v1/me`, { headers: { cookie } });
      assert.equal(meBySession.status, 401, 'the admin-page session ended with the keys');
      const keys = await tb.api<{ items: { revokedAt: string | null }[] }>(
        'GET',
        '/api/v1/users/leaver@okta.local/keys',
        tb.adminKey,
      );
      assert.ok(
        keys.body.items.every((k) => k.revokedAt !== null),
        'every key revoked',
      );

      // No key is issued while deactivated: it would come alive on reactivation, past the revocation.
      const during = await tb.api<{ error: { code: string } }>(
        'POST',
        `/api/v1/users/${encodeURIComponent('leaver@okta.local')}/keys`,
        tb.adminKey,
        {},
      );
      assert.equal(during.status, 409);
      assert.equal(during.body.error.code, 'user_inactive');
      const keysDuring = await tb.api<{ items: unknown[] }>(
        'GET',
        `/api/v1/users/${encodeURIComponent('leaver@okta.local')}/keys`,
        tb.adminKey,
      );
      assert.equal(keysDuring.body.items.length, keys.body.items.length, 'nothing was minted');

      await scim(tb.url, 'PATCH', `/Users/${created.body.id}`, okta.reactivate);
      assert.equal(await refused(tb.url, key.key), 401, 'revoked keys stay revoked');
      const fresh = await issueKey(tb, 'leaver@okta.local');
      await ask(tb.url, fresh.key);
      const again = liveClient(tb.url, { key: fresh.key });
      await again.next('hello');
      assert.equal((await scim(tb.url, 'DELETE', `/Users/${created.body.id}`)).status, 204);
      assert.equal((await again.closed).code, 4001, 'DELETE closes the socket too');
    });

    it("groups set team and role through the group mapping (Okta's and Entra ID's membership PATCHes)", async () => {
      const u = await scim<{ id: string }>(tb.url, 'POST', '/Users', {
        ...okta.createUser,
        userName: 'grouped@okta.local',
        emails: [{ primary: true, value: 'grouped@okta.local', type: 'work' }],
      });
      const id = u.body.id;
      const g = await scim<{ id: string; displayName: string }>(tb.url, 'POST', '/Groups', okta.createGroup);
      assert.equal(g.status, 201, JSON.stringify(g.body));
      assert.equal((await scim(tb.url, 'POST', '/Groups', okta.createGroup)).status, 409);
      // displayName is not case-exact (as /Schemas says): a lookup in other case finds the group, and
      // a create in other case is the same name, so an IdP never holds two groups for one team.
      const upper = okta.createGroup.displayName.toUpperCase();
      const dup = await scim<{ scimType?: string }>(tb.url, 'POST', '/Groups', {
        ...okta.createGroup,
        displayName: upper,
      });
      assert.equal(dup.status, 409);
      assert.equal(dup.body.scimType, 'uniqueness');
      const found = await scim<{ totalResults: number; Resources: { id: string }[] }>(
        tb.url,
        'GET',
        `/Groups?filter=${encodeURIComponent(`displayName eq "${upper}"`)}`,
      );
      assert.equal(found.body.totalResults, 1);
      assert.equal(found.body.Resources[0]?.id, g.body.id);

      assert.equal((await scim(tb.url, 'PATCH', `/Groups/${g.body.id}`, okta.addMember(id))).status, 200);
      assert.equal((await userByEmail(tb, 'grouped@okta.local')).team, 'platform');
      const seen = await scim<{ groups: { display: string }[] }>(tb.url, 'GET', `/Users/${id}`);
      assert.deepEqual(
        seen.body.groups.map((x) => x.display),
        ['Test SCIMv2'],
      );

      const admins = await scim<{ id: string }>(tb.url, 'POST', '/Groups', {
        ...okta.createGroup,
        displayName: 'bridge-admins',
        members: [{ value: id }],
      });
      assert.equal(admins.status, 201);
      assert.equal((await userByEmail(tb, 'grouped@okta.local')).role, 'admin');

      assert.equal((await scim(tb.url, 'PATCH', `/Groups/${g.body.id}`, okta.removeMember(id))).status, 200);
      assert.equal((await userByEmail(tb, 'grouped@okta.local')).team, null);
      assert.equal((await scim(tb.url, 'DELETE', `/Groups/${admins.body.id}`)).status, 204);
      assert.equal((await userByEmail(tb, 'grouped@okta.local')).role, 'member');
      const renamed = await scim<{ displayName: string }>(
        tb.url,
        'PATCH',
        `/Groups/${g.body.id}`,
        okta.renameGroup(g.body.id),
      );
      assert.equal(renamed.body.displayName, 'Test SCIMv2 renamed');

      const eg = await scim<{ id: string }>(tb.url, 'POST', '/Groups', entra.createGroup);
      assert.equal(eg.status, 201);
      const byName = await scim<{ totalResults: number; Resources: Record<string, unknown>[] }>(
        tb.url,
        'GET',
        `/Groups?${entra.findGroupQuery}`,
      );
      assert.equal(byName.body.totalResults, 1);
      assert.equal(byName.body.Resources[0]?.members, undefined, 'excludedAttributes=members');
      assert.equal((await scim(tb.url, 'PATCH', `/Groups/${eg.body.id}`, entra.addMember(id))).status, 200);
      assert.equal((await userByEmail(tb, 'grouped@okta.local')).team, 'data');
      assert.equal(
        (await scim(tb.url, 'PATCH', `/Groups/${eg.body.id}`, entra.removeMember(id))).status,
        200,
      );
      assert.equal((await userByEmail(tb, 'grouped@okta.local')).team, null);
      assert.equal((await scim(tb.url, 'GET', '/Groups/grp_nope')).status, 404);
    });

    it('a user deleted over SCIM loses their team and admin role: created again with that email, they start as a member', async () => {
      const u = await scim<{ id: string }>(tb.url, 'POST', '/Users', {
        ...okta.createUser,
        userName: 'rehire@okta.local',
        emails: [{ primary: true, value: 'rehire@okta.local', type: 'work' }],
      });
      const admins = await scim<{ id: string }>(tb.url, 'POST', '/Groups', {
        ...okta.createGroup,
        displayName: 'bridge-admins',
        members: [{ value: u.body.id }],
      });
      assert.equal(admins.status, 201);
      assert.equal((await userByEmail(tb, 'rehire@okta.local')).role, 'admin');
      assert.equal((await scim(tb.url, 'DELETE', `/Users/${u.body.id}`)).status, 204);
      const gone = await userByEmail(tb, 'rehire@okta.local');
      assert.equal(gone.role, 'member', 'deleted: in no group, so no admin');
      // A deleted user is no member to add (SCIM shows them as 404)…
      const add = await scim(tb.url, 'PATCH', `/Groups/${admins.body.id}`, okta.addMember(u.body.id));
      assert.equal(add.status, 400);
      assert.equal((await userByEmail(tb, 'rehire@okta.local')).role, 'member');
      // …and coming back, they are a member until a group says otherwise.
      const back = await scim<{ id: string; groups: unknown[] }>(tb.url, 'POST', '/Users', {
        ...okta.createUser,
        userName: 'rehire@okta.local',
        emails: [{ primary: true, value: 'rehire@okta.local', type: 'work' }],
      });
      assert.equal(back.status, 201);
      assert.equal(back.body.id, u.body.id, 'the same bridge user, its audit trail kept');
      assert.equal((await userByEmail(tb, 'rehire@okta.local')).role, 'member');
      const key = await issueKey(tb, 'rehire@okta.local');
      assert.equal((await tb.api('GET', '/api/v1/users', key.key)).status, 403);
      assert.equal((await scim(tb.url, 'DELETE', `/Groups/${admins.body.id}`)).status, 204);
    });

    it('an Entra ID removal naming a user the bridge never had still removes the others', async () => {
      const u = await scim<{ id: string }>(tb.url, 'POST', '/Users', {
        ...okta.createUser,
        userName: 'removed@okta.local',
        emails: [{ primary: true, value: 'removed@okta.local', type: 'work' }],
      });
      const g = await scim<{ id: string }>(tb.url, 'POST', '/Groups', {
        ...okta.createGroup,
        displayName: 'bridge-admins',
        members: [{ value: u.body.id }],
      });
      assert.equal((await userByEmail(tb, 'removed@okta.local')).role, 'admin');
      const out = await scim(tb.url, 'PATCH', `/Groups/${g.body.id}`, {
        schemas: [PATCH_OP],
        Operations: [
          { op: 'Remove', path: 'members', value: [{ value: 'usr_never_here' }, { value: u.body.id }] },
        ],
      });
      assert.equal(out.status, 200, JSON.stringify(out.body));
      assert.equal((await userByEmail(tb, 'removed@okta.local')).role, 'member');
      assert.equal((await scim(tb.url, 'DELETE', `/Groups/${g.body.id}`)).status, 204);
    });

    it('a userName SCIM shows for a user it did not create (their email) is taken; a PUT without `active` keeps a user deactivated', async () => {
      const made = await tb.api('POST', '/api/v1/users', tb.adminKey, { email: 'handmade@example.com' });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      const u = await scim<{ id: string }>(tb.url, 'POST', '/Users', {
        ...okta.createUser,
        userName: 'renamer@okta.local',
        emails: [{ primary: true, value: 'renamer@okta.local', type: 'work' }],
      });
      const rename = await scim<{ scimType?: string }>(tb.url, 'PATCH', `/Users/${u.body.id}`, {
        schemas: [PATCH_OP],
        Operations: [{ op: 'replace', path: 'userName', value: 'Handmade@example.com' }],
      });
      assert.equal(rename.status, 409);
      assert.equal(rename.body.scimType, 'uniqueness');
      const found = await scim<{ totalResults: number }>(
        tb.url,
        'GET',
        `/Users?filter=${encodeURIComponent('userName eq "handmade@example.com"')}`,
      );
      assert.equal(found.body.totalResults, 1);

      assert.equal((await scim(tb.url, 'PATCH', `/Users/${u.body.id}`, okta.deactivate)).status, 200);
      const { active: _a, ...withoutActive } = okta.createUser as Record<string, unknown>;
      const put = await scim<{ active: boolean }>(tb.url, 'PUT', `/Users/${u.body.id}`, {
        ...withoutActive,
        userName: 'renamer@okta.local',
        emails: [{ primary: true, value: 'renamer@okta.local', type: 'work' }],
      });
      assert.equal(put.status, 200);
      assert.equal(put.body.active, false);
      assert.ok((await userByEmail(tb, 'renamer@okta.local')).deactivatedAt);
    });

    it('a stream running when its user is deactivated, or its key revoked, ends then with an error event', async () => {
      const created = await scim<{ id: string }>(tb.url, 'POST', '/Users', {
        ...okta.createUser,
        userName: 'streamer@okta.local',
        emails: [{ primary: true, value: 'streamer@okta.local', type: 'work' }],
      });
      const streamOf = async (key: string) => {
        upstream.clear();
        upstream.next({ kind: 'drip', count: 200, delayMs: 50 });
        const client = new Anthropic({ apiKey: key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
        const stream = client.messages.stream({
          model: 'claude-sonnet-4-6',
          max_tokens: 50,
          messages: [{ role: 'user', content: 'a long answer' }],
        });
        const first = new Promise<void>((resolve) => stream.once('text', () => resolve()));
        const ended = stream.finalMessage().then(
          () => 'completed',
          (err: unknown) => (err instanceof Error ? err.message : String(err)),
        );
        await first;
        // In an object: an async function returning the promise itself would wait for the stream's end.
        return { ended };
      };
      const key = await issueKey(tb, 'streamer@okta.local');
      const running = await streamOf(key.key);
      const t0 = Date.now();
      assert.equal((await scim(tb.url, 'PATCH', `/Users/${created.body.id}`, okta.deactivate)).status, 200);
      assert.match(await running.ended, /deactivated while the request ran/);
      assert.ok(Date.now() - t0 < 2_000, 'ended at once, not after the 10 s the stream had left');

      assert.equal((await scim(tb.url, 'PATCH', `/Users/${created.body.id}`, okta.reactivate)).status, 200);
      const second = await issueKey(tb, 'streamer@okta.local');
      const other = await issueKey(tb, 'streamer@okta.local');
      const revoking = await streamOf(second.key);
      const t1 = Date.now();
      const r = await tb.api('DELETE', `/api/v1/keys/${second.id}`, tb.adminKey);
      assert.ok(r.status < 300, `revoke: ${r.status}`);
      assert.match(await revoking.ended, /revoked while the request ran/);
      assert.ok(Date.now() - t1 < 2_000);
      await ask(tb.url, other.key);
    });

    it('membership changes sent at once to one group all land', async () => {
      const g = await scim<{ id: string }>(tb.url, 'POST', '/Groups', {
        ...entra.createGroup,
        displayName: 'concurrent',
        externalId: 'concurrent',
      });
      const ids = await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const r = await scim<{ id: string }>(tb.url, 'POST', '/Users', {
            ...okta.createUser,
            userName: `crowd${i}@okta.local`,
            emails: [{ primary: true, value: `crowd${i}@okta.local`, type: 'work' }],
            externalId: `crowd${i}`,
          });
          assert.equal(r.status, 201, JSON.stringify(r.body));
          return r.body.id;
        }),
      );
      const answers = await Promise.all(
        ids.map((id) => scim(tb.url, 'PATCH', `/Groups/${g.body.id}`, entra.addMember(id))),
      );
      assert.deepEqual(
        answers.map((a) => a.status),
        ids.map(() => 200),
      );
      const after = await scim<{ members: { value: string }[] }>(tb.url, 'GET', `/Groups/${g.body.id}`);
      assert.deepEqual(after.body.members.map((m) => m.value).sort(), [...ids].sort());
    });

    it('lists with startIndex/count and totalResults, and serves the discovery documents', async () => {
      const all = await scim<{ totalResults: number }>(tb.url, 'GET', '/Users');
      assert.ok(all.body.totalResults >= 3);
      const page = await scim<{
        totalResults: number;
        startIndex: number;
        itemsPerPage: number;
        Resources: { id: string }[];
      }>(tb.url, 'GET', '/Users?startIndex=2&count=1');
      assert.equal(page.body.totalResults, all.body.totalResults);
      assert.equal(page.body.startIndex, 2);
      assert.equal(page.body.itemsPerPage, 1);
      assert.equal(page.body.Resources.length, 1);
      const spc = await scim<{ patch: { supported: boolean }; filter: { supported: boolean } }>(
        tb.url,
        'GET',
        '/ServiceProviderConfig',
      );
      assert.equal(spc.body.patch.supported, true);
      assert.equal(spc.body.filter.supported, true);
      const types = await scim<{ Resources: { name: string; meta: { location: string } }[] }>(
        tb.url,
        'GET',
        '/ResourceTypes',
      );
      assert.deepEqual(
        types.body.Resources.map((t) => t.name),
        ['User', 'Group'],
      );
      const schemas = await scim<{ Resources: { id: string; meta: { location: string } }[] }>(
        tb.url,
        'GET',
        '/Schemas',
      );
      assert.equal(schemas.body.Resources.length, 2);
      // Each document is served at the location its list entry names (validators fetch them).
      for (const doc of [...types.body.Resources, ...schemas.body.Resources]) {
        const one = await scim<{ meta: { location: string } }>(
          tb.url,
          'GET',
          doc.meta.location.replace(/^\/scim\/v2/, ''),
        );
        assert.equal(one.status, 200, doc.meta.location);
        assert.deepEqual(one.body, doc);
      }
      const missing = await scim<{ status: string; schemas: string[] }>(tb.url, 'GET', '/Schemas/urn:x:nope');
      assert.equal(missing.status, 404);
      assert.equal(missing.body.status, '404');
    });

    it('malformed bodies get 400 in the SCIM error shape; a wrong token 401; a member key 403', async () => {
      const cases: [string, string, unknown, string][] = [
        ['POST', '/Users', '{"userName": ', 'invalidSyntax'],
        ['POST', '/Users', [], 'invalidSyntax'],
        ['POST', '/Users', { schemas: [], userName: 'no-email' }, 'invalidValue'],
        ['POST', '/Users', { userName: 42 }, 'invalidValue'],
        ['PATCH', '/Users/usr_x', okta.deactivate, ''],
        ['GET', '/Users?filter=userName%20sw%20%22a%22', undefined, 'invalidFilter'],
      ];
      const target = (await scim<{ Resources: { id: string }[] }>(tb.url, 'GET', '/Users?count=1')).body
        .Resources[0]!.id;
      cases.push(
        [
          'PATCH',
          `/Users/${target}`,
          { Operations: [{ op: 'replace', value: { active: false } }] },
          'invalidSyntax',
        ],
        [
          'PATCH',
          `/Users/${target}`,
          { schemas: okta.deactivate.schemas, Operations: [{ op: 'jump' }] },
          'invalidSyntax',
        ],
        [
          'PATCH',
          `/Users/${target}`,
          {
            schemas: okta.deactivate.schemas,
            Operations: [{ op: 'replace', path: 'active', value: 'nope' }],
          },
          'invalidValue',
        ],
      );
      for (const [method, route, body, scimType] of cases) {
        const r = await scim(tb.url, method, route, body);
        const expected = route === '/Users/usr_x' ? 404 : 400;
        assert.equal(
          r.status,
          expected,
          `${method} ${route} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`,
        );
        assert.match(r.contentType ?? '', /^application\/scim\+json/);
        assert.deepEqual(r.body.schemas, [ERROR_SCHEMA]);
        assert.equal(r.body.status, String(expected));
        assert.equal(typeof r.body.detail, 'string');
        if (scimType) assert.equal(r.body.scimType, scimType);
      }
      // Nothing was half-applied by the refused PATCHes.
      assert.equal((await scim<{ active: boolean }>(tb.url, 'GET', `/Users/${target}`)).body.active, true);

      for (const token of [null, 'wrong-token', `${SCIM_TOKEN}x`]) {
        const r = await scim(tb.url, 'GET', '/Users', undefined, token);
        assert.equal(r.status, 401);
        assert.deepEqual(r.body.schemas, [ERROR_SCHEMA]);
        assert.ok(!JSON.stringify(r.body).includes(SCIM_TOKEN));
      }
      const member = await tb.addUser(`scim-member-${storeKind}@example.com`);
      assert.equal((await scim(tb.url, 'GET', '/Users', undefined, member.key)).status, 403);
      assert.equal((await scim(tb.url, 'GET', '/Users', undefined, tb.adminKey)).status, 200);
      assert.ok(!tb.logs.join('').includes(SCIM_TOKEN), 'the SCIM token never reaches the logs');
    });
  });
}

describe('AIBRIDGE_SCIM_TOKEN', () => {
  it('refuses a short token or one with spaces at start, naming the setting', () => {
    for (const bad of ['short', `${'x'.repeat(40)} y`])
      assert.throws(
        () => loadConfig({ port: '0' }, { AIBRIDGE_SCIM_TOKEN: bad }),
        (err: Error) => err.message.includes('AIBRIDGE_SCIM_TOKEN'),
      );
    assert.equal(loadConfig({ port: '0' }, { AIBRIDGE_SCIM_TOKEN: SCIM_TOKEN }).scimToken, SCIM_TOKEN);
    assert.equal(loadConfig({ port: '0' }, {}).scimToken, undefined);
  });
});

describe('SCIM without AIBRIDGE_SCIM_TOKEN', () => {
  it('answers 404: the endpoints do not exist', async () => {
    const upstream = await new AnthropicMock().start();
    const tb = await startBridge(upstream.url);
    try {
      const r = await scim(tb.url, 'GET', '/Users', undefined, tb.adminKey);
      assert.equal(r.status, 404);
      assert.ok(!tb.bridge.routes.routes.some((x) => x.url.startsWith('/scim/')));
    } finally {
      await tb.close();
      await upstream.stop();
    }
  });
});

describe('SCIM deactivation across two replicas on one PostgreSQL database', function () {
  this.timeout(60_000);

  it('deactivating on replica A closes the socket on replica B with 4001 within 5 s', async () => {
    const upstream = await new AnthropicMock().start();
    const env = {
      AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('scim_replicas'),
      AIBRIDGE_SCIM_TOKEN: SCIM_TOKEN,
      AIBRIDGE_KEY_HASH_SECRET: randomBytes(32).toString('base64url'),
    };
    // One data dir: the second replica reads the admin key the first one bootstrapped.
    const dir = await tempDir();
    const a = await startBridge(upstream.url, env, dir);
    const b = await startBridge(upstream.url, env, dir);
    try {
      const created = await scim<{ id: string }>(a.url, 'POST', '/Users', okta.createUser);
      assert.equal(created.status, 201);
      const key = await issueKey(a, 'test.user@okta.local');
      await ask(b.url, key.key);
      const socket = liveClient(b.url, { key: key.key });
      await socket.next('hello');
      const t0 = Date.now();
      assert.equal((await scim(a.url, 'PATCH', `/Users/${created.body.id}`, entra.disable)).status, 200);
      const closed = await Promise.race([
        socket.closed,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('socket on B still open after 5 s')), 5000),
        ),
      ]);
      assert.equal(closed.code, 4001);
      assert.ok(Date.now() - t0 < 5000);
      assert.equal(await refused(b.url, key.key), 401);
    } finally {
      await b.close();
      await a.close();
      await upstream.stop();
    }
  });
});
