import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/** Bridge keys start with this, so secret scanners and people can recognise a leaked one. */
const KEY_PREFIX = 'aib_';
const KEY_RE = /^aib_[A-Za-z0-9_-]{43}$/;

/** 256 bits from the OS CSPRNG, base64url. */
export function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

export function newKeyId(): string {
  return `key_${randomUUID().replaceAll('-', '').slice(0, 20)}`;
}

/** What lists show of a key: enough to recognise it, far too little to use it. */
export function displayPrefix(key: string): string {
  return key.slice(0, KEY_PREFIX.length + 6);
}

export function looksLikeKey(token: string): boolean {
  return KEY_RE.test(token);
}

/**
 * AIBRIDGE_KEY_HASH_SECRET as bytes: its text, or with `base64url:` the bytes a `key-hash.secret`
 * file holds (`base64url:$(cat <data-dir>/key-hash.secret)`), so a deployment that began with the
 * generated file moves to replicas sharing the secret by environment and keeps its keys.
 */
export function envSecret(value: string): Buffer {
  const encoded = /^base64url:(.*)$/s.exec(value.trim());
  return encoded ? Buffer.from(encoded[1]!.trim(), 'base64url') : Buffer.from(value, 'utf8');
}

/**
 * Keys are stored only as an HMAC-SHA256 under a server secret: a copy of the store alone is not
 * enough to test guesses offline. The secret comes from AIBRIDGE_KEY_HASH_SECRET (replicas share it)
 * or is created once in the data dir.
 */
export class KeyHasher {
  private constructor(private readonly secret: Buffer) {}

  static async load(dataDir: string, fromEnv: string | undefined): Promise<KeyHasher> {
    if (fromEnv) return new KeyHasher(envSecret(fromEnv));
    const file = path.join(dataDir, 'key-hash.secret');
    try {
      return new KeyHasher(Buffer.from((await fs.readFile(file, 'utf8')).trim(), 'base64url'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
    const secret = randomBytes(32);
    // 'wx': if another process created it first, fail and read theirs instead of overwriting.
    try {
      await fs.writeFile(file, `${secret.toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
      return new KeyHasher(secret);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return new KeyHasher(Buffer.from((await fs.readFile(file, 'utf8')).trim(), 'base64url'));
    }
  }

  /**
   * What the store keeps to tell whether replicas share this secret: an HMAC of a fixed text, from
   * which the secret cannot be recovered or keys tested.
   */
  verifier(): string {
    return createHmac('sha256', this.secret).update('aibridge key-hash verifier v1').digest('hex');
  }

  hash(key: string): string {
    return createHmac('sha256', this.secret).update(key).digest('hex');
  }
}
