import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { BucketpipeError, ExitCode, StreamConflictError, UsageError } from '../errors.js';
import { sendingManifest } from '../pipelines/pipeline-test-kit.js';
import { EncryptionKey, type StreamKeys } from './encryption.js';
import { encodeManifest, type Manifest, parseManifest } from './manifest.js';
import { encryptionForNewStream, streamKeysFor } from './stream-encryption.js';
import { streamIdToBytes } from './stream-id.js';

const STREAM = '0f8e2b7a-3c4d-4e5f-8a9b-1c2d3e4f5a6b';
const OTHER_STREAM = '11111111-2222-4333-8444-555555555555';
const WHERE = 'mem://bucket/stream';
const keyBytes = Uint8Array.from({ length: 32 }, (_, i) => (i * 13 + 7) & 0xff);
const otherKeyBytes = Uint8Array.from({ length: 32 }, (_, i) => (i * 91 + 1) & 0xff);
const key = new EncryptionKey(keyBytes);
const otherKey = new EncryptionKey(otherKeyBytes);

const plainManifest = (streamId = STREAM): Manifest => sendingManifest(streamId);

function encryptedManifest(streamId = STREAM, using = key): Manifest {
  const { record } = encryptionForNewStream(using, streamId);
  return { ...plainManifest(streamId), encryption: record };
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** Key bytes, and every key derived from them, in the spellings a leak would use. */
function secrets(bytes: Uint8Array, streamId = STREAM): string[] {
  const derived = new EncryptionKey(bytes).forStream(streamIdToBytes(streamId));
  return [bytes, derived.cipherKey, derived.digestKey, derived.streamDigestKey].flatMap((b) => [
    hex(b),
    Buffer.from(b).toString('base64'),
    hex(b).toUpperCase(),
  ]);
}

function refusal(run: () => unknown): BucketpipeError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(BucketpipeError);
    const refused = error as BucketpipeError;
    expect(refused.message).not.toContain('\n');
    expect(refused.message).toContain(WHERE);
    for (const secret of [...secrets(keyBytes), ...secrets(otherKeyBytes)]) expect(refused.message).not.toContain(secret);
    for (const secret of [...secrets(keyBytes), ...secrets(otherKeyBytes)]) expect(inspect(refused)).not.toContain(secret);
    return refused;
  }
  throw new Error('accepted');
}

describe('encryptionForNewStream', () => {
  it('without a key: neither keys nor a record (a plain stream)', () => {
    expect(encryptionForNewStream(undefined, STREAM)).toEqual({});
  });

  it('with a key: the stream’s keys and a manifest record with their key check, and no key material', () => {
    const { keys, record } = encryptionForNewStream(key, STREAM);
    const expected = key.forStream(streamIdToBytes(STREAM));
    expect(keys && hex(keys.cipherKey)).toBe(hex(expected.cipherKey));
    expect(record).toEqual({ algorithm: 'aes-256-gcm', kdf: 'hkdf-sha256', keyCheck: expected.keyCheck });
    const json = JSON.stringify(record);
    for (const secret of secrets(keyBytes)) expect(json).not.toContain(secret);
  });

  it('its record passes manifest validation and round-trips through encode/parse', () => {
    const manifest = encryptedManifest();
    const parsed = parseManifest(encodeManifest(manifest), WHERE);
    expect(parsed).toEqual(manifest);
    expect(parsed.encryption?.keyCheck).toMatch(/^[0-9a-f]{64}$/);
    // And a complete encrypted manifest too.
    const complete: Manifest = {
      ...manifest,
      state: 'complete',
      watermark: 3,
      rawBytes: 2 * 16 * 1024 * 1024 + 5,
      final: { chunks: 3, rawBytes: 2 * 16 * 1024 * 1024 + 5, digest: 'ab'.repeat(32) },
    };
    expect(parseManifest(encodeManifest(complete), WHERE)).toEqual(complete);
  });

  it('refuses a stream id that is not a UUID', () => {
    expect(() => encryptionForNewStream(key, 'not-a-uuid')).toThrow(TypeError);
  });
});

describe('streamKeysFor', () => {
  it('a plain stream without a key: undefined', () => {
    expect(streamKeysFor(plainManifest(), undefined, WHERE)).toBeUndefined();
  });

  it('an encrypted stream with its key: the keys encryptionForNewStream made for it', () => {
    const keys = streamKeysFor(encryptedManifest(), key, WHERE) as StreamKeys;
    const made = encryptionForNewStream(key, STREAM).keys as StreamKeys;
    expect(hex(keys.cipherKey)).toBe(hex(made.cipherKey));
    expect(hex(keys.digestKey)).toBe(hex(made.digestKey));
    expect(hex(keys.streamDigestKey)).toBe(hex(made.streamDigestKey));
    expect(keys.keyCheck).toBe(made.keyCheck);
    // A key object built again from the same bytes is the same key.
    expect(streamKeysFor(encryptedManifest(), new EncryptionKey(Uint8Array.from(keyBytes)), WHERE)?.keyCheck).toBe(made.keyCheck);
  });

  it('an encrypted stream without a key: BP_KEY_MISSING, a usage error (exit 2) that says how to give it', () => {
    const error = refusal(() => streamKeysFor(encryptedManifest(), undefined, WHERE));
    expect(error).toBeInstanceOf(UsageError);
    expect(error.code).toBe('BP_KEY_MISSING');
    expect(error.exitCode).toBe(ExitCode.usage);
    expect(error.message).toMatch(/is encrypted \(aes-256-gcm\)/);
    expect(error.message).toContain('--encryption-key-file');
  });

  it('an encrypted stream with another key: BP_KEY_WRONG (exit 2)', () => {
    const error = refusal(() => streamKeysFor(encryptedManifest(), otherKey, WHERE));
    expect(error).toBeInstanceOf(UsageError);
    expect(error.code).toBe('BP_KEY_WRONG');
    expect(error.exitCode).toBe(ExitCode.usage);
    expect(error.message).toMatch(/is not the key stream .* was encrypted with/);
  });

  it('a manifest copied from another stream with the same key (its key check is bound to the stream id): BP_KEY_WRONG', () => {
    const transplanted: Manifest = { ...plainManifest(), encryption: encryptedManifest(OTHER_STREAM).encryption };
    expect(refusal(() => streamKeysFor(transplanted, key, WHERE)).code).toBe('BP_KEY_WRONG');
  });

  it('a key check that is damaged, short, uppercase or not hex: BP_KEY_WRONG, never accepted', () => {
    const good = encryptedManifest().encryption?.keyCheck as string;
    const last = good.at(-1) === '0' ? '1' : '0';
    for (const keyCheck of [`${good.slice(0, -1)}${last}`, good.slice(0, 62), `${good}00`, '', 'zz'.repeat(32), '00'.repeat(32)]) {
      const manifest: Manifest = { ...plainManifest(), encryption: { algorithm: 'aes-256-gcm', kdf: 'hkdf-sha256', keyCheck } };
      expect(refusal(() => streamKeysFor(manifest, key, WHERE)).code, keyCheck).toBe('BP_KEY_WRONG');
    }
  });

  it('a plain stream with a key: BP_NOT_ENCRYPTED, a conflict (exit 4), not a silent plaintext read', () => {
    const error = refusal(() => streamKeysFor(plainManifest(), key, WHERE));
    expect(error).toBeInstanceOf(StreamConflictError);
    expect(error.code).toBe('BP_NOT_ENCRYPTED');
    expect(error.exitCode).toBe(ExitCode.conflict);
    expect(error.message).toContain('drop --encryption-key-file');
  });
});

describe('parseManifest and the encryption record', () => {
  const bytesOf = (value: unknown) => Buffer.from(JSON.stringify(value));
  const withEncryption = (encryption: unknown) => ({ ...plainManifest(), encryption });
  const good = () => encryptedManifest().encryption as NonNullable<Manifest['encryption']>;

  function malformed(encryption: unknown): StreamConflictError {
    try {
      parseManifest(bytesOf(withEncryption(encryption)), WHERE);
    } catch (error) {
      expect(error).toBeInstanceOf(StreamConflictError);
      const conflict = error as StreamConflictError;
      expect(conflict.code).toBe('BP_MANIFEST_MALFORMED');
      expect(conflict.exitCode).toBe(ExitCode.conflict);
      expect(conflict.message).toContain(WHERE);
      expect(conflict.message).toContain('"encryption" must have algorithm "aes-256-gcm", kdf "hkdf-sha256" and a 64-digit hex keyCheck');
      return conflict;
    }
    throw new Error(`parseManifest accepted encryption ${JSON.stringify(encryption)}`);
  }

  it('accepts a manifest without the field (a plain stream) and one with a valid record', () => {
    expect(parseManifest(bytesOf(plainManifest()), WHERE).encryption).toBeUndefined();
    expect(parseManifest(bytesOf(withEncryption(good())), WHERE).encryption).toEqual(good());
  });

  it('refuses another algorithm or KDF', () => {
    for (const algorithm of ['aes-128-gcm', 'chacha20-poly1305', 'AES-256-GCM', '', undefined, 1]) malformed({ ...good(), algorithm });
    for (const kdf of ['hkdf-sha512', 'pbkdf2', 'HKDF-SHA256', '', undefined, null]) malformed({ ...good(), kdf });
  });

  it('refuses a key check that is short, long, uppercase, not hex or not a string', () => {
    const keyCheck = good().keyCheck;
    for (const bad of [
      keyCheck.slice(0, 63),
      keyCheck.slice(0, 62),
      `${keyCheck}0`,
      keyCheck.toUpperCase(),
      `${keyCheck.slice(0, 63)}g`,
      ` ${keyCheck.slice(1)}`,
      '',
      42,
      null,
      undefined,
    ]) {
      malformed({ ...good(), keyCheck: bad });
    }
  });

  it('refuses a record that is not an object', () => {
    for (const bad of [null, true, 'aes-256-gcm', 0, [], [good()]]) malformed(bad);
  });
});
