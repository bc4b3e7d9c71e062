import type { FastifyBaseLogger } from 'fastify';
import type { Clock } from '../clock';
import { BridgeError } from '../errors';
import type { UpstreamConfig } from '../provider-config';
import { familyOf } from '../providers/registry';
import type { ProviderAdapter } from '../providers/types';
import type { Store } from '../store/types';
import { type CredentialSource, singleCredential } from './credentials';
import { KeyPool, type KeyView, type PoolEvents, type PoolKey } from './key-pool';

/** A provider key as the store keeps it: added at run time, or an override of a file key's settings. */
export interface StoredProviderKey {
  instance: string;
  name: string;
  /** The secret sealed for the slot `provider_key:<instance>:<name>`; null: an override of a file key. */
  sealed: string | null;
  weight?: number | undefined;
  rpm?: number | null | undefined;
  tpm?: number | null | undefined;
  disabled?: boolean | undefined;
  reenabledAt?: string | undefined;
  createdAt: string;
  updatedAt: string;
}

/** Seals secrets at rest (the bridge's credentials cipher, server/mcp/cipher.ts). */
export interface Sealer {
  seal(plaintext: string, slot: string): string;
  open(sealed: string, slot: string): string;
}

/** The name an instance's own `apiKey` takes in its pool once keys are added at run time. */
export const DEFAULT_KEY = 'default';

const docId = (instance: string, name: string): string => `${instance}/${name}`;
const slotOf = (instance: string, name: string): string => `provider_key:${instance}:${name}`;

/**
 * Every provider instance's key pool: the providers file's `keys` merged with the keys stored at run
 * time (a stored key overrides a file key of the same name). An instance with no pool keeps its
 * single credential. `load` runs at start and whenever another replica changes a `provider_key`.
 */
export class KeyPools {
  private readonly pools = new Map<string, KeyPool>();
  /** Each adapter's source, made once: it is asked for on every upstream attempt. */
  private readonly sources = new WeakMap<ProviderAdapter, CredentialSource>();
  /**
   * Stored keys this replica cannot open (sealed under another AIBRIDGE_MCP_CREDENTIALS_KEY, or
   * altered), by instance: in no pool, but listed, so an admin sees what to remove or add again.
   */
  private readonly unreadable = new Map<string, KeyView[]>();

  constructor(
    private readonly d: {
      instances: Readonly<Record<string, UpstreamConfig>>;
      adapters: readonly ProviderAdapter[];
      store: Store;
      clock: Clock;
      sealer: Sealer | undefined;
      events: PoolEvents;
      log: FastifyBaseLogger;
    },
  ) {
    for (const a of d.adapters)
      if (this.takesKeys(a.id)) this.pools.set(a.id, new KeyPool(a.id, a, d.clock, d.events));
  }

  /** What the exchange acquires each attempt's credential from: the pool while it has keys. */
  credentialsFor(adapter: ProviderAdapter): CredentialSource {
    let source = this.sources.get(adapter);
    if (!source) {
      const single = singleCredential(adapter, (status, reason) =>
        this.d.events.credentialRefused?.(adapter.id, status, reason),
      );
      const pool = this.pools.get(adapter.id);
      source = pool ? { acquire: () => (pool.size > 0 ? pool.acquire() : single.acquire()) } : single;
      this.sources.set(adapter, source);
    }
    return source;
  }

  /** Whether the instance has pool keys (a run-time key can make an instance without `apiKey` serve). */
  hasKeys(instance: string): boolean {
    return (this.pools.get(instance)?.size ?? 0) > 0;
  }

  /** Every pool key and whether it cools down now, for the metrics gauge. */
  cooling(): { provider: string; key: string; cooling: boolean }[] {
    return [...this.pools].flatMap(([provider, pool]) =>
      pool.list().map((k) => ({ provider, key: k.name, cooling: k.state === 'cooling' })),
    );
  }

  async load(): Promise<void> {
    const stored = await this.d.store.listDocs<StoredProviderKey>('provider_key');
    for (const s of stored)
      if (!this.pools.has(s.instance))
        // The providers file no longer has the instance (or it takes no keys): the key waits unused.
        this.d.log.warn(
          { provider: s.instance, key: s.name },
          'provider key: no such instance takes keys; not used',
        );
    this.unreadable.clear();
    for (const [instance, pool] of this.pools)
      pool.setKeys(
        this.merge(
          instance,
          stored.filter((s) => s.instance === instance),
        ),
      );
  }

  /** The pool's keys, then those stored that cannot be opened here (`state: "unreadable"`). */
  list(instance: string): KeyView[] {
    const keys = this.pool(instance).list();
    const unreadable = this.unreadable.get(instance);
    return unreadable ? [...keys, ...unreadable] : keys;
  }

  /** Adds a key at run time, its secret sealed at rest; refused when the name is taken. */
  async add(
    instance: string,
    k: { name: string; key: string; weight?: number; rpm?: number; tpm?: number },
    now: Date,
  ): Promise<KeyView> {
    const pool = this.pool(instance);
    if (pool.list().some((v) => v.name === k.name) || (await this.stored(instance, k.name)))
      throw new BridgeError(
        'provider_key_exists',
        `Provider instance "${instance}" already has a key "${k.name}".`,
      );
    if (!this.d.sealer) throw new BridgeError('provider_key_not_storable');
    const at = now.toISOString();
    const doc: StoredProviderKey = {
      instance,
      name: k.name,
      sealed: this.d.sealer.seal(k.key, slotOf(instance, k.name)),
      weight: k.weight,
      rpm: k.rpm,
      tpm: k.tpm,
      disabled: false,
      createdAt: at,
      updatedAt: at,
    };
    await this.d.store.putDoc('provider_key', docId(instance, k.name), doc);
    await this.load();
    return this.view(instance, k.name);
  }

  /** Changes a key's weight, limits or state; re-enabling clears `auth_failed` on every replica. */
  async patch(
    instance: string,
    name: string,
    p: { weight?: number; rpm?: number | null; tpm?: number | null; disabled?: boolean },
    now: Date,
  ): Promise<KeyView> {
    this.view(instance, name);
    const at = now.toISOString();
    const prev = await this.stored(instance, name);
    const doc: StoredProviderKey = {
      ...(prev ?? { instance, name, sealed: null, createdAt: at }),
      ...(p.weight !== undefined ? { weight: p.weight } : {}),
      ...(p.rpm !== undefined ? { rpm: p.rpm } : {}),
      ...(p.tpm !== undefined ? { tpm: p.tpm } : {}),
      ...(p.disabled !== undefined ? { disabled: p.disabled } : {}),
      ...(p.disabled === false ? { reenabledAt: at } : {}),
      updatedAt: at,
    };
    await this.d.store.putDoc('provider_key', docId(instance, name), doc);
    await this.load();
    return this.view(instance, name);
  }

  /**
   * Removes a key added at run time; a file key can only be disabled here. One this replica cannot
   * open (sealed under another AIBRIDGE_MCP_CREDENTIALS_KEY) is in no pool, but is removable, so
   * its name can be added again after a change of that key (docs/operations.md).
   */
  async remove(instance: string, name: string): Promise<void> {
    const v = this.pool(instance)
      .list()
      .find((k) => k.name === name);
    if (v?.source === 'file') throw new BridgeError('provider_key_in_file');
    if (!v && (await this.stored(instance, name))?.sealed == null) throw keyNotFound(instance, name);
    await this.d.store.deleteDoc('provider_key', docId(instance, name));
    await this.load();
  }

  private view(instance: string, name: string): KeyView {
    const v = this.pool(instance)
      .list()
      .find((k) => k.name === name);
    if (!v) throw keyNotFound(instance, name);
    return v;
  }

  private stored(instance: string, name: string): Promise<StoredProviderKey | undefined> {
    return this.d.store.getDoc<StoredProviderKey>('provider_key', docId(instance, name));
  }

  private pool(instance: string): KeyPool {
    const pool = this.pools.get(instance);
    if (pool) return pool;
    if (this.d.instances[instance])
      throw new BridgeError(
        'invalid_provider_key',
        `instance: provider instance "${instance}" takes no keys (its family signs with its own credentials).`,
      );
    throw new BridgeError('provider_not_found', `No provider instance "${instance}".`);
  }

  private takesKeys(instance: string): boolean {
    const i = this.d.instances[instance];
    return i !== undefined && familyOf(i.type)?.keyPools !== false;
  }

  /** The file's keys (or its `apiKey` as `default`, once keys are added) with the stored ones over them. */
  private merge(instance: string, stored: StoredProviderKey[]): PoolKey[] {
    const i = this.d.instances[instance]!;
    const keys = new Map<string, PoolKey>();
    for (const k of i.keys ?? [])
      keys.set(k.name, {
        name: k.name,
        key: k.key,
        weight: k.weight ?? 1,
        rpm: k.rpm,
        tpm: k.tpm,
        disabled: false,
        source: 'file',
      });
    const added = stored.filter((s) => s.sealed !== null && !keys.has(s.name));
    if (
      i.keys === undefined &&
      i.apiKey !== undefined &&
      (added.length > 0 || stored.some((s) => s.name === DEFAULT_KEY))
    )
      keys.set(DEFAULT_KEY, { name: DEFAULT_KEY, key: i.apiKey, weight: 1, disabled: false, source: 'file' });
    for (const s of stored) {
      const base = keys.get(s.name);
      let secret = base?.key;
      if (s.sealed !== null && base === undefined) {
        try {
          secret = this.d.sealer?.open(s.sealed, slotOf(s.instance, s.name));
        } catch (err) {
          // Sealed with another credentials key, or altered: the key cannot serve; say which.
          this.d.log.error(
            { err, provider: s.instance, key: s.name },
            'provider key: cannot open the stored key',
          );
        }
        if (secret === undefined) {
          const list = this.unreadable.get(instance) ?? [];
          list.push(unreadableView(s));
          this.unreadable.set(instance, list);
        }
      }
      if (secret === undefined) continue;
      keys.set(s.name, {
        name: s.name,
        key: secret,
        weight: s.weight ?? base?.weight ?? 1,
        rpm: s.rpm === null ? undefined : (s.rpm ?? base?.rpm),
        tpm: s.tpm === null ? undefined : (s.tpm ?? base?.tpm),
        disabled: s.disabled ?? false,
        source: base?.source ?? 'api',
        reenabledAt: s.reenabledAt,
      });
    }
    return [...keys.values()];
  }
}

/** A stored key that cannot be opened, as the pool's listing shows its keys (no secret either way). */
function unreadableView(s: StoredProviderKey): KeyView {
  return {
    name: s.name,
    source: 'api',
    weight: s.weight ?? 1,
    rpm: s.rpm ?? null,
    tpm: s.tpm ?? null,
    state: 'unreadable',
    cooldownUntil: null,
    requests: 0,
    rateLimited: 0,
    authFailures: 0,
    lastMinute: { requests: 0, tokens: 0 },
  };
}

function keyNotFound(instance: string, name: string): BridgeError {
  return new BridgeError('provider_key_not_found', `Provider instance "${instance}" has no key "${name}".`);
}
