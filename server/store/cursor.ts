import { BridgeError } from '../errors';

/** Cursors are opaque to clients; inside they carry the append-order position to continue below. */
export function encodeCursor(seq: number): string {
  return Buffer.from(`s:${seq}`).toString('base64url');
}

export function decodeCursor(cursor: string): number {
  const m = /^s:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new BridgeError('invalid_cursor');
  return Number(m[1]);
}
