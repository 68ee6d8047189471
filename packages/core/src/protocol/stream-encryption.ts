import { StreamConflictError, UsageError } from '../errors.js';
import { type EncryptionKey, manifestEncryption, type StreamKeys, sameDigest } from './encryption.js';
import type { Manifest } from './manifest.js';
import { streamIdToBytes } from './stream-id.js';

/**
 * The keys to read or continue the stream of `manifest` with, or undefined for a plain stream.
 * Refuses, before any chunk is read: an encrypted stream without a key (BP_KEY_MISSING), a key
 * that is not the stream's (BP_KEY_WRONG), and a key for a plain stream (BP_NOT_ENCRYPTED) — the
 * operator expects authenticated chunks, and a stream replaced by a plaintext one must not pass.
 * `where` names the stream in messages.
 */
export function streamKeysFor(manifest: Manifest, key: EncryptionKey | undefined, where: string): StreamKeys | undefined {
  const recorded = manifest.encryption;
  if (!recorded) {
    if (!key) return undefined;
    throw new StreamConflictError(
      'BP_NOT_ENCRYPTED',
      `stream ${where} is not encrypted, but an encryption key was given: refusing to treat a plaintext stream as an encrypted one; if this stream was sent without encryption on purpose, drop --encryption-key-file`,
    );
  }
  if (!key) {
    throw new UsageError(
      `stream ${where} is encrypted (${recorded.algorithm}): give the key it was sent with, --encryption-key-file FILE`,
      'BP_KEY_MISSING',
    );
  }
  const keys = key.forStream(streamIdToBytes(manifest.streamId));
  if (!sameDigest(Buffer.from(keys.keyCheck, 'hex'), Buffer.from(recorded.keyCheck, 'hex'))) {
    throw new UsageError(
      `the key in --encryption-key-file is not the key stream ${where} was encrypted with (its key check differs): give the key the stream was sent with`,
      'BP_KEY_WRONG',
    );
  }
  return keys;
}

/** The manifest record of a new stream's encryption, and its keys; both undefined without a key. */
export function encryptionForNewStream(
  key: EncryptionKey | undefined,
  streamId: string,
): { keys?: StreamKeys; record?: Manifest['encryption'] } {
  if (!key) return {};
  const keys = key.forStream(streamIdToBytes(streamId));
  return { keys, record: manifestEncryption(keys) };
}
