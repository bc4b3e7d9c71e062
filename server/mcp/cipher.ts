import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { KEY_BYTES } from './settings';

const VERSION = 'v1';

/**
 * Seals MCP secrets and per-user credentials at rest: AES-256-GCM from node:crypto, a random
 * 96-bit nonce per message, and the slot the value belongs to (`server:user`) as associated data,
 * so a sealed value copied into another user's slot fails to open.
 */
export class CredentialCipher {
  private readonly key: Buffer;

  constructor(keyBase64: string) {
    this.key = Buffer.from(keyBase64, 'base64');
    if (this.key.length !== KEY_BYTES) throw new Error(`the credentials key must be ${KEY_BYTES} bytes`);
  }

  seal(plaintext: string, slot: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(slot, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return [VERSION, iv.toString('base64'), tag.toString('base64'), body.toString('base64')].join('.');
  }

  /** Throws when the value was altered, sealed with another key, or belongs to another slot. */
  open(sealed: string, slot: string): string {
    const [version, iv, tag, body] = sealed.split('.');
    if (version !== VERSION || iv === undefined || tag === undefined || body === undefined)
      throw new Error('not a sealed credential');
    // A fixed tag length: a shortened tag must not be accepted.
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64'), {
      authTagLength: 16,
    });
    decipher.setAAD(Buffer.from(slot, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64')), decipher.final()]).toString('utf8');
  }
}
