import {
  type Cipher,
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  type Decipher,
  hkdfSync,
  randomFillSync,
  timingSafeEqual,
} from 'node:crypto';
import { inspect } from 'node:util';

/**
 * Client-side encryption of chunk payloads (docs/SECURITY.md, docs/FORMAT.md §2.5).
 *
 * The operator's 32-byte key never leaves this process. Each stream gets its own keys, derived with
 * HKDF-SHA256 from the key and the stream id, so a nonce can only collide within one stream:
 * - the cipher key encrypts each chunk's zstd frame with AES-256-GCM, a fresh random 96-bit nonce
 *   per chunk object, and the header fields known before encryption as associated data;
 * - the digest key replaces the plain raw SHA-256 of the header (which would let anyone with read
 *   access to the bucket confirm a guess of a chunk's contents) with HMAC-SHA256;
 * - the stream digest key keys the stream digest, so that the end of the stream cannot be moved by
 *   editing the manifest (a key of its own: a chunk whose raw bytes happen to be a list of digests
 *   must not yield a valid stream digest);
 * - the key check, stored in the manifest, tells a wrong key from a tampered chunk before a byte is
 *   read; being an HKDF output, it reveals nothing about the key.
 */
export const ENCRYPTION_ALGORITHM = 'aes-256-gcm';
export const KEY_DERIVATION = 'hkdf-sha256';
export const ENCRYPTION_KEY_LENGTH = 32;
export const NONCE_LENGTH = 12;
export const TAG_LENGTH = 16;
/** Bytes an encrypted payload has beyond its zstd frame: the nonce before it, the tag after it. */
export const ENCRYPTION_OVERHEAD = NONCE_LENGTH + TAG_LENGTH;

/** What the manifest records about a stream's encryption. The key itself is never stored. */
export interface ManifestEncryption {
  algorithm: typeof ENCRYPTION_ALGORITHM;
  kdf: typeof KEY_DERIVATION;
  /** Hex of the key check derived from the key and the stream id. */
  keyCheck: string;
}

/** One stream's keys; travels to the codec workers with each job, and nowhere else. */
export interface StreamKeys {
  cipherKey: Uint8Array;
  digestKey: Uint8Array;
  streamDigestKey: Uint8Array;
  keyCheck: string;
}

const INFO = {
  cipher: 'bucketpipe v1 chunk payload aes-256-gcm',
  digest: 'bucketpipe v1 raw digest hmac-sha256',
  streamDigest: 'bucketpipe v1 stream digest hmac-sha256',
  keyCheck: 'bucketpipe v1 key check',
} as const;

/** The operator's key. It prints, logs and serialises as a placeholder, never as its bytes. */
export class EncryptionKey {
  readonly #bytes: Buffer;

  constructor(bytes: Uint8Array) {
    if (bytes.length !== ENCRYPTION_KEY_LENGTH) {
      throw new RangeError(`an encryption key has ${ENCRYPTION_KEY_LENGTH} bytes, got ${bytes.length}`);
    }
    this.#bytes = Buffer.from(bytes);
  }

  /** The keys of the stream with these 16 id bytes. */
  forStream(streamId: Uint8Array): StreamKeys {
    const derive = (info: string) => new Uint8Array(hkdfSync('sha256', this.#bytes, streamId, info, 32));
    return {
      cipherKey: derive(INFO.cipher),
      digestKey: derive(INFO.digest),
      streamDigestKey: derive(INFO.streamDigest),
      keyCheck: Buffer.from(derive(INFO.keyCheck)).toString('hex'),
    };
  }

  toJSON(): string {
    return '[encryption key]';
  }

  toString(): string {
    return '[encryption key]';
  }

  [inspect.custom](): string {
    return 'EncryptionKey [redacted]';
  }
}

export function manifestEncryption(keys: StreamKeys): ManifestEncryption {
  return { algorithm: ENCRYPTION_ALGORITHM, kdf: KEY_DERIVATION, keyCheck: keys.keyCheck };
}

/** Names the raw digest in messages. */
export function rawDigestName(keys: StreamKeys | undefined): string {
  return keys ? 'raw HMAC-SHA256' : 'raw SHA-256';
}

/** An incremental 32-byte digest: a SHA-256 hash or an HMAC-SHA256. */
export interface Digest {
  update(data: Uint8Array): Digest;
  digest(): Buffer;
}

/**
 * The digest a chunk's raw bytes are identified by: SHA-256 for a plain stream, HMAC-SHA256 with
 * the stream's digest key for an encrypted one.
 */
export function createRawDigest(keys: StreamKeys | undefined): Digest {
  return keys ? createHmac('sha256', keys.digestKey) : createHash('sha256');
}

/** The digest the stream digest is folded into: SHA-256, or HMAC-SHA256 with the stream digest key. */
export function createStreamDigestHash(keys: StreamKeys | undefined): Digest {
  return keys ? createHmac('sha256', keys.streamDigestKey) : createHash('sha256');
}

/**
 * Encrypts `payload[NONCE_LENGTH, NONCE_LENGTH + plainLength)` in place into the layout
 * nonce ‖ ciphertext ‖ tag and returns the payload's length. `aad` is authenticated, not encrypted.
 */
export function sealPayload(keys: StreamKeys, aad: Uint8Array, payload: Uint8Array, plainLength: number): number {
  const nonce = payload.subarray(0, NONCE_LENGTH);
  randomFillSync(nonce);
  const cipher = createCipheriv(ENCRYPTION_ALGORITHM, keys.cipherKey, nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(aad);
  transformInPlace(cipher, payload.subarray(NONCE_LENGTH, NONCE_LENGTH + plainLength));
  payload.set(cipher.getAuthTag(), NONCE_LENGTH + plainLength);
  return plainLength + ENCRYPTION_OVERHEAD;
}

/**
 * Decrypts a payload sealed by sealPayload in place and returns the plaintext (a view of
 * `payload`), or null when it fails authentication (wrong key or altered bytes): then `payload`
 * holds unauthenticated bytes and must be thrown away.
 */
export function openPayload(keys: StreamKeys, aad: Uint8Array, payload: Uint8Array): Uint8Array | null {
  if (payload.length < ENCRYPTION_OVERHEAD) return null;
  const nonce = payload.subarray(0, NONCE_LENGTH);
  const decipher = createDecipheriv(ENCRYPTION_ALGORITHM, keys.cipherKey, nonce, { authTagLength: TAG_LENGTH });
  decipher.setAAD(aad);
  decipher.setAuthTag(payload.subarray(payload.length - TAG_LENGTH));
  const body = payload.subarray(NONCE_LENGTH, payload.length - TAG_LENGTH);
  try {
    transformInPlace(decipher, body);
  } catch {
    return null;
  }
  return body;
}

/** Piece by piece, so that a 1 GiB chunk does not need a second 1 GiB buffer outside the slab budget. */
const PIECE = 1024 * 1024;

/** Runs a GCM cipher over `bytes`, writing its output over them; final() checks the tag when decrypting. */
function transformInPlace(cipher: Cipher | Decipher, bytes: Uint8Array): void {
  let written = 0;
  const put = (output: Buffer) => {
    bytes.set(output, written);
    written += output.length;
  };
  for (let offset = 0; offset < bytes.length; offset += PIECE) put(cipher.update(bytes.subarray(offset, offset + PIECE)));
  put(cipher.final());
  // GCM is a stream mode: its output is exactly as long as its input.
  if (written !== bytes.length) throw new Error(`bug: AES-GCM gave ${written} bytes for ${bytes.length}`);
}

export function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
