import assert from 'node:assert/strict';
import type { GroupMapping } from '../../server/identity/group-mapping';
import { IdentityService } from '../../server/identity/identity-service';
import { KeyHasher } from '../../server/identity/keys';
import { type OidcPerson, provision } from '../../server/sso/oidc-identity';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { tempDir } from '../helpers/bridge';

describe('the last admin', () => {
  let store: EmbeddedStore;
  let identity: IdentityService;
  beforeEach(async () => {
    store = new EmbeddedStore({ dataDir: await tempDir() });
    await store.open();
    identity = new IdentityService(store, await KeyHasher.load(await tempDir(), 'test-secret'));
  });
  afterEach(() => store.close());

  const code = (err: unknown) => (err as { code?: string }).code;

  it('is the last one who can sign in: a deactivated admin counts for nothing, and may be demoted', async () => {
    const a = await identity.createUser({ email: 'a@example.com', role: 'admin' });
    const b = await identity.createUser({ email: 'b@example.com', role: 'admin' });
    await store.updateUser(b.id, { deactivatedAt: new Date().toISOString() });
    await assert.rejects(identity.updateUser(a.id, { role: 'member' }), (err) => code(err) === 'last_admin');
    assert.equal((await identity.updateUser(b.id, { role: 'member' })).role, 'member');
    await store.updateUser(b.id, { deactivatedAt: null });
    await identity.updateUser(b.id, { role: 'admin' });
    assert.equal((await identity.updateUser(a.id, { role: 'member' })).role, 'member', 'b can sign in');
    await assert.rejects(identity.updateUser(b.id, { role: 'member' }), (err) => code(err) === 'last_admin');
  });
});

describe('the admin role an OIDC sign-in gives, with AIBRIDGE_OIDC_ADMIN_GROUP set', () => {
  let store: EmbeddedStore;
  let identity: IdentityService;
  const mapping: GroupMapping = { groupTeams: {}, adminGroup: 'bridge-admins', firstGroupIsTeam: false };
  beforeEach(async () => {
    store = new EmbeddedStore({ dataDir: await tempDir() });
    await store.open();
    identity = new IdentityService(store, await KeyHasher.load(await tempDir(), 'test-secret'));
    await identity.createUser({ email: 'keeper@example.com', role: 'admin' });
  });
  afterEach(() => store.close());

  const signIn = async (email: string, groups: OidcPerson['groups']) =>
    (
      await provision(
        { email, name: undefined, groups },
        mapping,
        identity,
        await store.getUserByEmail(email),
      )
    ).user;

  it('is taken away by a token with no groups claim (Entra ID and Okta leave it out for a user in none they send)', async () => {
    assert.equal((await signIn('erin@example.com', ['bridge-admins'])).role, 'admin');
    assert.equal((await signIn('erin@example.com', undefined)).role, 'member');
    assert.equal((await signIn('erin@example.com', ['bridge-admins'])).role, 'admin');
    assert.equal((await signIn('erin@example.com', [])).role, 'member');
    assert.equal((await signIn('newbie@example.com', undefined)).role, 'member');
  });

  it('is left to SCIM when SCIM pushes groups', async () => {
    assert.equal((await signIn('erin@example.com', ['bridge-admins'])).role, 'admin');
    assert.equal((await signIn('erin@example.com', 'scim')).role, 'admin');
  });
});
