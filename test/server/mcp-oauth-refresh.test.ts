import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { IdentityService } from '../../server/identity/identity-service';
import { KeyHasher } from '../../server/identity/keys';
import { McpGrants, type TokenSet } from '../../server/oauth/grants';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { tempDir } from '../helpers/temp-dirs';

const RESOURCE = 'https://bridge.example/mcp';
const REDIRECT = 'http://127.0.0.1:1/callback';

/**
 * Refreshing an MCP OAuth grant (`grant_type=refresh_token`, docs/mcp.md#oauth-for-mcp-clients)
 * does not grow the store: each refresh ends the grant's earlier access tokens, so a member
 * refreshing in a loop leaves one token document, and only the newest token works.
 */
describe('MCP OAuth refresh keeps one access token per grant', function () {
  this.timeout(30_000);
  let store: EmbeddedStore;
  let grants: McpGrants;
  let identity: IdentityService;
  let now = Date.parse('2030-01-01T00:00:00Z');

  before(async () => {
    const dir = await tempDir();
    store = new EmbeddedStore({ dataDir: dir });
    await store.open();
    const hasher = await KeyHasher.load(dir, randomBytes(32).toString('base64url'));
    const clock = () => new Date(now);
    identity = new IdentityService(store, hasher, clock);
    grants = new McpGrants(store, hasher, identity, clock);
  });
  after(async () => {
    await store.close();
  });

  /** Registration, consent and the code exchange, as the routes drive them; the first token set. */
  async function authorized(email: string): Promise<{ clientId: string; tokens: TokenSet }> {
    const user = await identity.createUser({ email });
    const client = await grants.register('loop client', [REDIRECT], '192.0.2.1');
    const verifier = randomBytes(32).toString('base64url');
    const handle = await grants.begin(
      {
        clientId: client.id,
        redirectUri: REDIRECT,
        codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
        state: null,
        scope: null,
        resource: RESOURCE,
      },
      '192.0.2.1',
    );
    const back = new URL(await grants.answer(handle, user, true, 'https://bridge.example'));
    const tokens = await grants.exchangeCode({
      code: back.searchParams.get('code')!,
      clientId: client.id,
      redirectUri: REDIRECT,
      codeVerifier: verifier,
      resource: RESOURCE,
    });
    return { clientId: client.id, tokens };
  }

  const tokenDocs = async (grantId: string) =>
    (await store.listDocs<{ grantId: string }>('oauth_access_token')).filter((t) => t.grantId === grantId);
  const grantOf = (t: TokenSet) => t.refresh_token.slice('aibr_'.length).split('.')[0]!;

  it('after many refreshes the grant holds one access token document; the newest works, earlier ones are revoked', async () => {
    const { clientId, tokens: first } = await authorized('loop@example.com');
    const other = await authorized('bystander@example.com');
    const grantId = grantOf(first);
    assert.equal((await tokenDocs(grantId)).length, 1);

    let current = first;
    const spent: TokenSet[] = [];
    for (let i = 0; i < 25; i++) {
      now += 1000;
      spent.push(current);
      current = await grants.refresh({ refreshToken: current.refresh_token, clientId, resource: RESOURCE });
      assert.ok((await tokenDocs(grantId)).length <= 1, `after refresh ${i + 1}`);
    }
    assert.equal((await tokenDocs(grantId)).length, 1);

    const principal = await grants.authenticate(current.access_token, RESOURCE);
    assert.equal(principal.user.email, 'loop@example.com', 'the newest access token works');
    for (const old of [spent[0]!, spent.at(-1)!])
      await assert.rejects(grants.authenticate(old.access_token, RESOURCE), {
        code: 'unauthorized',
        message: 'That access token is unknown or revoked.',
      });
    // Another grant's token is not touched by this grant's refreshes.
    assert.equal((await tokenDocs(grantOf(other.tokens))).length, 1);
    assert.equal(
      (await grants.authenticate(other.tokens.access_token, RESOURCE)).user.email,
      'bystander@example.com',
    );
  });
});
