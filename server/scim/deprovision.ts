import type { User } from '../../shared/identity';
import type { Store } from '../store/types';

/** Written (kind `user_deactivation`, by user id) when a user is deactivated; its write reaches every replica. */
export interface DeactivationDoc {
  userId: string;
  at: string;
}

/** Just what deprovisioning reads of an admin-page session (server/admin/sessions.ts). */
interface SessionOwner {
  id: string;
  userId: string;
}

/**
 * Deactivation and reactivation of a user by the identity provider. Deactivating marks the user,
 * revokes every key of theirs, ends their admin-page sessions and closes their live sockets (here at
 * once, on other replicas when the `user_deactivation` document's change reaches them). Revoked keys
 * stay revoked on reactivation: the user signs in again and gets new ones.
 */
export class Deprovisioner {
  constructor(
    private readonly store: Store,
    /** Closes the user's live sockets on this replica whose key or session no longer works. */
    private readonly closeSockets: (userId: string) => Promise<void>,
    private readonly now: () => Date,
  ) {}

  async deactivate(user: User): Promise<User> {
    const at = this.now().toISOString();
    const updated = user.deactivatedAt
      ? user
      : ((await this.store.updateUser(user.id, { deactivatedAt: at })) ?? user);
    for (const key of await this.store.listKeys(user.id))
      if (key.revokedAt === null) await this.store.revokeKey(key.id, at);
    for (const s of await this.store.listDocs<SessionOwner>('admin_session'))
      if (s.userId === user.id) await this.store.deleteDoc('admin_session', s.id);
    await this.store.putDoc<DeactivationDoc>('user_deactivation', user.id, { userId: user.id, at });
    await this.closeSockets(user.id);
    return updated;
  }

  async reactivate(user: User): Promise<User> {
    if (!user.deactivatedAt) return user;
    const updated = (await this.store.updateUser(user.id, { deactivatedAt: null })) ?? user;
    await this.store.deleteDoc('user_deactivation', user.id);
    return updated;
  }

  /** Another replica deactivated someone: close the sockets of every deactivated user held here. */
  async reload(): Promise<void> {
    const docs = await this.store.listDocs<DeactivationDoc>('user_deactivation');
    await Promise.all(docs.map((d) => this.closeSockets(d.userId)));
  }
}
