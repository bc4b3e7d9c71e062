import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { BridgeError } from '../errors';
import type { Store } from '../store/types';
import { credentialFrom } from './auth';
import type { KeyHasher } from './keys';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route also takes a provisioner credential (`aibp_…`); every other route refuses one. */
    provisioner?: boolean;
  }
  interface FastifyRequest {
    /** Set when a provisioner credential, not a bridge key, authenticated the request. */
    provisioner?: ProvisionerInfo;
  }
}

/** Provisioner credentials start with this, so scanners and people tell them from bridge keys (`aib_`). */
const PROVISIONER_PREFIX = 'aibp_';
const PROVISIONER_RE = /^aibp_[A-Za-z0-9_-]{43}$/;

/** The longest a key minted by a provisioner may live: a workspace is re-provisioned long before. */
export const PROVISIONED_KEY_MAX_SECONDS = 30 * 86_400;

/** Provisioners one bridge keeps at most: each is looked up by scanning them. */
const MAX_PROVISIONERS = 100;

/** A provisioner as the API shows it: never the secret after creation. */
export interface ProvisionerInfo {
  id: string;
  name: string;
  /** The first characters of the secret, enough to recognise it. */
  prefix: string;
  createdAt: string;
  createdBy: string;
  lastUsedAt: string | null;
}

interface StoredProvisioner extends ProvisionerInfo {
  /** Keyed hash of the secret (the same HMAC as bridge keys). */
  hash: string;
}

/** A provisioner's last use (kind `provisioner_use`, by the provisioner's id). */
interface ProvisionerUse {
  id: string;
  at: string;
}

/** `lastUsedAt`: the newer of the use document's and the one kept in the provisioner by earlier versions. */
function info(p: StoredProvisioner, used?: string): ProvisionerInfo {
  const { hash: _hash, ...rest } = p;
  const lastUsedAt = [rest.lastUsedAt, used].reduce<string | null>(
    (newest, at) => (at && (!newest || at > newest) ? at : newest),
    null,
  );
  return { ...rest, lastUsedAt };
}

/**
 * Workspace-template credentials (docs/sso.md): an admin creates one; it can do exactly one thing,
 * mint a short-lived key for a named user on `POST /api/v1/users/:email/keys`. Stored as documents
 * (kind `provisioner`) so every replica knows them; the secret only as its keyed hash.
 */
export class Provisioners {
  constructor(
    private readonly store: Store,
    private readonly hasher: KeyHasher,
    private readonly now: () => Date,
  ) {}

  async create(name: string, createdBy: string): Promise<ProvisionerInfo & { secret: string }> {
    const all = await this.store.listDocs<StoredProvisioner>('provisioner');
    if (all.length >= MAX_PROVISIONERS)
      throw new BridgeError('invalid_request', `At most ${MAX_PROVISIONERS} provisioners; delete one first.`);
    const secret = PROVISIONER_PREFIX + randomBytes(32).toString('base64url');
    const p: StoredProvisioner = {
      id: `prv_${randomUUID().replaceAll('-', '').slice(0, 20)}`,
      name,
      prefix: secret.slice(0, PROVISIONER_PREFIX.length + 6),
      createdAt: this.now().toISOString(),
      createdBy,
      lastUsedAt: null,
      hash: this.hasher.hash(secret),
    };
    await this.store.putDoc('provisioner', p.id, p);
    return { ...info(p), secret };
  }

  async list(): Promise<ProvisionerInfo[]> {
    const uses = new Map(
      (await this.store.listDocs<ProvisionerUse>('provisioner_use')).map((u) => [u.id, u.at]),
    );
    return (await this.store.listDocs<StoredProvisioner>('provisioner')).map((p) => info(p, uses.get(p.id)));
  }

  async delete(id: string): Promise<void> {
    if (!(await this.store.deleteDoc('provisioner', id)))
      throw new BridgeError('provisioner_not_found', `No provisioner ${id}.`);
    await this.store.deleteDoc('provisioner_use', id);
  }

  /**
   * The access hook's view: a request carrying a provisioner credential is resolved here (true),
   * on the routes that take one; everywhere else it is refused, valid or not, so the credential
   * can never stand in for a key. A request without one is left to the key check (false).
   */
  async claim(req: FastifyRequest): Promise<boolean> {
    const token = credentialFrom(req.headers);
    if (token === undefined || !token.startsWith(PROVISIONER_PREFIX)) return false;
    if (req.routeOptions.config.provisioner !== true)
      throw new BridgeError(
        'forbidden',
        'A provisioner credential may only mint keys (POST /api/v1/users/:email/keys).',
      );
    const hash = PROVISIONER_RE.test(token) ? this.hasher.hash(token) : undefined;
    const found = (await this.store.listDocs<StoredProvisioner>('provisioner')).find((p) => p.hash === hash);
    if (!found) throw new BridgeError('unauthorized', 'That is not a valid provisioner credential.');
    // Noted apart: writing the provisioner back would undo a delete made since it was read.
    const use: ProvisionerUse = { id: found.id, at: this.now().toISOString() };
    await this.store.putDoc('provisioner_use', use.id, use);
    req.provisioner = info(found, use.at);
    return true;
  }
}

/**
 * Records a provisioner's use in the admin access log (`GET /api/v1/audit/access-log`): which
 * provisioner minted a key for whom, for how long. The provisioner stands where an admin would.
 */
export async function auditProvisionerUse(
  store: Store,
  req: FastifyRequest,
  at: Date,
  subjectUserId: string,
  details: Record<string, string>,
): Promise<void> {
  const p = req.provisioner;
  if (!p) return;
  await store.appendAccessLog({
    id: `acc_${randomUUID()}`,
    at: at.toISOString(),
    adminId: p.id,
    adminEmail: `provisioner:${p.name}`,
    route: `${req.method} ${req.routeOptions.url ?? req.url}`,
    subjectUserId,
    query: details,
  });
}
