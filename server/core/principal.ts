import type { KeyInfo, User } from '../../shared/identity';

/** A key as stored: its keyed hash, never the key. */
export interface KeyRecord extends KeyInfo {
  hash: string;
}

/** Who is calling: the user and the key they used. */
export interface Principal {
  user: User;
  key: KeyRecord;
}
