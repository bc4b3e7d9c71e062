import assert from 'node:assert/strict';
import { BridgeApiError, type Me } from '../../extension/api/bridge-client';
import { renewalDue } from '../../extension/auth/renewal';
import { type SecretStore, Session, type StateStore } from '../../extension/auth/session';
import {
  type Credentials,
  checkCredentials,
  credentialsFromEnv,
  defaultBridgeUrl,
  isInsecureRemote,
  movedBridge,
  normalizeBridgeUrl,
  parseSignInQuery,
} from '../../extension/auth/sign-in';
import { STORAGE } from '../../extension/ids';
import { KEY } from './fixtures';

class Secrets implements SecretStore {
  readonly map = new Map<string, string>();
  async get(k: string) {
    return this.map.get(k);
  }
  async store(k: string, v: string) {
    this.map.set(k, v);
  }
  async delete(k: string) {
    this.map.delete(k);
  }
}

/** Secret storage shared by several windows: like VS Code's, a change is announced to every window after it is made. */
class SharedSecrets extends Secrets {
  private readonly listeners = new Set<(e: { key: string }) => unknown>();
  onDidChange = (l: (e: { key: string }) => unknown) => {
    this.listeners.add(l);
    return { dispose: () => this.listeners.delete(l) };
  };
  private announce(key: string): void {
    setImmediate(() => {
      for (const l of this.listeners) l({ key });
    });
  }
  override async store(k: string, v: string) {
    await super.store(k, v);
    this.announce(k);
  }
  override async delete(k: string) {
    await super.delete(k);
    this.announce(k);
  }
}

/** Waits until `check` holds, or fails after a second. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check(), what);
}

class State implements StateStore {
  readonly map = new Map<string, unknown>();
  get<T>(k: string): T | undefined {
    return this.map.get(k) as T | undefined;
  }
  async update(k: string, v: unknown) {
    if (v === undefined) this.map.delete(k);
    else this.map.set(k, v);
  }
}

const USER = {
  id: 'u1',
  email: 'a@example.com',
  name: null,
  team: null,
  role: 'member' as const,
  createdAt: '',
};
const KEY_INFO: Me['key'] = {
  id: 'key_1',
  userId: 'u1',
  name: null,
  prefix: 'aib_abcd',
  createdAt: '',
  expiresAt: null,
  revokedAt: null,
  lastUsedAt: null,
};
const me = (c: Credentials): Promise<Me> =>
  c.key === KEY
    ? Promise.resolve({ user: USER, key: {} as Me['key'] })
    : Promise.reject(new BridgeApiError(401, 'unauthorized', 'Unknown key.'));

describe('extension: sign-in', () => {
  it('normalises the bridge URL people paste', () => {
    const ok = (s: string) => {
      const r = normalizeBridgeUrl(s);
      assert.ok(r.ok, s);
      return r.value;
    };
    assert.equal(ok(' https://bridge.example.com/ '), 'https://bridge.example.com');
    assert.equal(ok('https://bridge.example.com/anthropic'), 'https://bridge.example.com');
    assert.equal(ok('http://127.0.0.1:8080/openai/v1/'), 'http://127.0.0.1:8080');
    assert.equal(ok('https://example.com/bridge/api/v1'), 'https://example.com/bridge');
    for (const bad of ['', 'bridge.example.com', 'ftp://x', 'https://u:p@x.com', 'https://x.com/?a=1']) {
      assert.equal(normalizeBridgeUrl(bad).ok, false, bad);
    }
  });

  it('checks keys and reads sign-in links and the environment', () => {
    assert.equal(checkCredentials('https://x.com', 'sk-ant-123').ok, false);
    const link = parseSignInQuery(`url=${encodeURIComponent('https://x.com/')}&key=${KEY}`);
    assert.deepEqual(link, { ok: true, value: { url: 'https://x.com', key: KEY } });
    assert.equal(parseSignInQuery('url=https://x.com').ok, false);
    assert.equal(credentialsFromEnv({}), undefined);
    assert.deepEqual(credentialsFromEnv({ AIBRIDGE_URL: 'https://x.com', AIBRIDGE_KEY: KEY }), {
      ok: true,
      value: { url: 'https://x.com', key: KEY },
    });
    assert.equal(
      credentialsFromEnv({ AIBRIDGE_URL: 'https://x.com' }),
      undefined,
      'a URL alone only names the bridge',
    );
    assert.equal(credentialsFromEnv({ AIBRIDGE_KEY: KEY })?.ok, false);
    assert.equal(
      defaultBridgeUrl(undefined, ' ', 'https://b.example.com/anthropic/'),
      'https://b.example.com',
    );
    assert.equal(defaultBridgeUrl('not a url'), undefined);
    assert.equal(isInsecureRemote('http://bridge.corp'), true);
    assert.equal(isInsecureRemote('http://127.0.0.1:9'), false);
    assert.equal(isInsecureRemote('https://bridge.corp'), false);
    assert.equal(isInsecureRemote('http://localhost:7410'), false);
    assert.equal(isInsecureRemote('http://[::1]:7410'), false);
    assert.equal(isInsecureRemote('http://127.8.9.10'), false);
    // Names that only look like this machine: their owners say where they resolve.
    assert.equal(isInsecureRemote('http://127.attacker.example'), true);
    assert.equal(isInsecureRemote('http://127.0.0.1.nip.io:8080'), true);
  });

  it('keeps the key in secret storage only; sign-out removes it and remembers a declined env key', async () => {
    const secrets = new Secrets();
    const state = new State();
    const s = new Session(secrets, state, me);
    const seen: unknown[] = [];
    s.onDidChange((x) => seen.push(x?.url));
    await s.signIn({ url: 'https://x.com', key: KEY }, { user: USER, key: KEY_INFO });
    assert.deepEqual(JSON.parse(secrets.map.get(STORAGE.credentials)!), { url: 'https://x.com', key: KEY });
    assert.ok(
      ![...state.map.values()].some((v) => JSON.stringify(v).includes(KEY)),
      'no key in global state',
    );
    assert.equal(s.current?.user?.email, 'a@example.com');

    const again = new Session(secrets, state, me);
    assert.equal(await again.restore(), 'restored');
    await again.signOut(KEY);
    assert.equal(secrets.map.size, 0);
    assert.equal(again.current, undefined);
    assert.equal(again.declinedEnvKey(KEY), true);
    assert.deepEqual(seen, ['https://x.com']);
  });

  it('a sign-in or sign-out in one VS Code window reaches the others (shared secret storage)', async () => {
    const secrets = new SharedSecrets();
    const state = new State();
    const asked: string[] = [];
    const counted = (c: Credentials) => {
      asked.push(c.key);
      return me(c);
    };
    const a = new Session(secrets, state, counted);
    const b = new Session(secrets, state, counted);
    assert.equal(await b.restore(), 'none');
    const seenA: (string | undefined)[] = [];
    const seenB: (string | undefined)[] = [];
    a.onDidChange((x) => seenA.push(x?.key));
    b.onDidChange((x) => seenB.push(x?.key));

    await a.signIn({ url: 'https://x.com', key: KEY }, { user: USER, key: KEY_INFO });
    await until(() => b.current?.key === KEY, 'window B follows the sign-in');
    assert.equal(b.current?.url, 'https://x.com');
    assert.equal(b.current?.user?.email, 'a@example.com', 'B asked the bridge who this is');
    assert.deepEqual(asked, [KEY], 'A, which signed in, did not ask again');

    await b.signOut();
    await until(() => a.current === undefined, 'window A follows the sign-out');
    assert.deepEqual(seenA, [KEY, undefined]);
    assert.deepEqual(seenB, [KEY, undefined]);

    // A key stored by another window that the bridge refuses is not adopted (that window handles it).
    await secrets.store(
      STORAGE.credentials,
      JSON.stringify({ url: 'https://x.com', key: `aib_${'B'.repeat(43)}` }),
    );
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(a.current, undefined);
    a.dispose();
    b.dispose();
  });

  it('a window follows another window’s sign-in to a new bridge, and sends the new key to that bridge only', async () => {
    const secrets = new SharedSecrets();
    const state = new State();
    const KEY2 = `aib_${'C'.repeat(43)}`;
    const asked: string[] = [];
    const me2 = (c: Credentials): Promise<Me> => {
      asked.push(`${c.key === KEY ? 'KEY' : 'KEY2'} to ${c.url}`);
      return (c.key === KEY && c.url === 'https://x.com') || (c.key === KEY2 && c.url === 'https://y.com')
        ? Promise.resolve({ user: USER, key: KEY_INFO })
        : Promise.reject(new BridgeApiError(401, 'unauthorized', 'Unknown key.'));
    };
    const a = new Session(secrets, state, me2);
    const b = new Session(secrets, state, me2);
    await b.signIn({ url: 'https://x.com', key: KEY }, { user: USER, key: KEY_INFO });
    // Another window signs in to another bridge. Global state (the URL alone) reaches other windows
    // on a channel of its own, later than secrets: this window's still names the old bridge.
    const stale = new State();
    await stale.update(STORAGE.url, 'https://x.com');
    const c = new Session(secrets, stale, me2);
    await c.signIn({ url: 'https://y.com', key: KEY2 }, { user: USER, key: KEY_INFO });
    await until(() => b.current?.key === KEY2 && a.current?.key === KEY2, 'the other windows follow');
    assert.equal(b.current?.url, 'https://y.com');
    assert.equal(a.current?.url, 'https://y.com');
    assert.deepEqual(
      asked,
      ['KEY2 to https://y.com', 'KEY2 to https://y.com'],
      'the new key went to its own bridge only',
    );
    a.dispose();
    b.dispose();
    c.dispose();
  });

  it('a window closed while following another window’s sign-in adopts nothing', async () => {
    const secrets = new SharedSecrets();
    const state = new State();
    let asked = 0;
    let answer: (m: Me) => void = () => undefined;
    const slow = (): Promise<Me> => {
      asked++;
      return new Promise<Me>((r) => {
        answer = r;
      });
    };
    const b = new Session(secrets, state, slow);
    await secrets.store(STORAGE.credentials, JSON.stringify({ url: 'https://x.com', key: KEY }));
    await until(() => asked === 1, 'the bridge was asked');
    b.dispose();
    answer({ user: USER, key: KEY_INFO });
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(b.current, undefined);
  });

  it('a window whose previous bridge is unreachable follows another window’s sign-in to the new one', async () => {
    const secrets = new SharedSecrets();
    const state = new State();
    const KEY2 = `aib_${'D'.repeat(43)}`;
    const me3 = (c: Credentials): Promise<Me> =>
      c.url === 'https://old.example'
        ? Promise.reject(new BridgeApiError(0, 'unreachable', 'Cannot reach'))
        : c.key === KEY2 && c.url === 'https://new.example'
          ? Promise.resolve({ user: USER, key: KEY_INFO })
          : Promise.reject(new BridgeApiError(401, 'unauthorized', 'Unknown key.'));
    const b = new Session(secrets, state, me3);
    await secrets.store(STORAGE.credentials, JSON.stringify({ url: 'https://old.example', key: KEY }));
    assert.equal(await b.restore(), 'restored-offline');
    await secrets.store(STORAGE.credentials, JSON.stringify({ url: 'https://new.example', key: KEY2 }));
    await until(() => b.current?.key === KEY2, 'window B follows');
    assert.equal(b.current?.url, 'https://new.example', 'not the unreachable old bridge');
    assert.equal(b.current?.user?.email, 'a@example.com');
    b.dispose();
  });

  it('moves an earlier version’s sign-in (the key alone in secrets, the URL in global state) into one stored value', async () => {
    const secrets = new Secrets();
    const state = new State();
    await secrets.store(STORAGE.key, KEY);
    await state.update(STORAGE.url, 'https://x.com');
    const s = new Session(secrets, state, me);
    assert.equal(await s.restore(), 'restored');
    assert.equal(s.current?.url, 'https://x.com');
    assert.deepEqual(JSON.parse(secrets.map.get(STORAGE.credentials)!), { url: 'https://x.com', key: KEY });
    assert.equal(secrets.map.has(STORAGE.key), false, 'the old secret is gone');
    // Unreadable stored credentials are no sign-in (and not an error).
    const broken = new Secrets();
    await broken.store(STORAGE.credentials, '{"url":');
    assert.equal(await new Session(broken, new State(), me).restore(), 'none');
  });

  it('offers a sign-in to the bridge aibridge.url moved to, not to the same bridge in another spelling', () => {
    const old = 'https://bridge.example.com';
    assert.equal(movedBridge(old, 'https://bridge-2.example.com/'), 'https://bridge-2.example.com');
    assert.equal(movedBridge(old, ' https://bridge.example.com/anthropic '), undefined, 'same bridge');
    assert.equal(movedBridge(old, 'https://BRIDGE.example.com'), undefined, 'host names ignore case');
    assert.equal(movedBridge(old, ''), undefined, 'cleared: stay signed in');
    assert.equal(movedBridge(old, 'not a url'), undefined);
    assert.equal(movedBridge(old, 42), undefined);
    assert.equal(
      movedBridge(undefined, 'https://bridge-2.example.com'),
      undefined,
      'signed out: Sign In reads it',
    );
  });

  it('forgets a stored key the bridge now refuses; stays signed in offline when it cannot be reached', async () => {
    const secrets = new Secrets();
    const state = new State();
    await secrets.store(STORAGE.key, `aib_${'B'.repeat(43)}`);
    await state.update(STORAGE.url, 'https://x.com');
    assert.equal(await new Session(secrets, state, me).restore(), 'rejected');
    assert.equal(secrets.map.size, 0);

    await secrets.store(STORAGE.key, KEY);
    const offline = new Session(secrets, state, () =>
      Promise.reject(new BridgeApiError(0, 'unreachable', 'Cannot reach')),
    );
    assert.equal(await offline.restore(), 'restored-offline');
    assert.equal(offline.current?.user, null);
    assert.deepEqual(JSON.parse(secrets.map.get(STORAGE.credentials)!), { url: 'https://x.com', key: KEY });
  });

  it('restored offline, a device key learns its expiry once the bridge is reached, so it is renewed before it runs out', async () => {
    const secrets = new Secrets();
    const state = new State();
    await secrets.store(STORAGE.key, KEY);
    await state.update(STORAGE.url, 'https://x.com');
    const offline = new Session(secrets, state, () =>
      Promise.reject(new BridgeApiError(0, 'unreachable', 'Cannot reach')),
    );
    assert.equal(await offline.restore(), 'restored-offline');
    assert.equal(offline.incomplete, true);
    const now = Date.parse('2026-03-10T00:00:00.000Z');
    const device: Me['key'] = {
      ...KEY_INFO,
      renewable: true,
      createdAt: '2026-03-05T00:00:00.000Z',
      expiresAt: '2026-03-12T00:00:00.000Z',
    };
    let changes = 0;
    offline.onDidChange(() => changes++);
    // What the live connection's first reach of the bridge reports (GET /api/v1/me).
    assert.equal(offline.noteMe({ user: USER, key: device, providers: [] }), true);
    assert.equal(changes, 0, 'same key: nothing restarts');
    assert.equal(offline.incomplete, false);
    assert.equal(offline.current?.user?.email, USER.email);
    const info = offline.current?.keyInfo;
    assert.ok(info, 'the key id and expiry are known');
    assert.equal(renewalDue(info, now), true, 'two days left of seven: due for renewal');
  });
});
