import { createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { format, inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  createRawDigest,
  createStreamDigestHash,
  ENCRYPTION_ALGORITHM,
  ENCRYPTION_KEY_LENGTH,
  ENCRYPTION_OVERHEAD,
  EncryptionKey,
  KEY_DERIVATION,
  manifestEncryption,
  NONCE_LENGTH,
  openPayload,
  rawDigestName,
  type StreamKeys,
  sameDigest,
  sealPayload,
  TAG_LENGTH,
} from './encryption.js';
import { StreamDigest } from './stream-digest.js';
import { streamIdToBytes } from './stream-id.js';

const STREAM = '0f8e2b7a-3c4d-4e5f-8a9b-1c2d3e4f5a6b';
const OTHER_STREAM = '11111111-2222-4333-8444-555555555555';
const streamId = streamIdToBytes(STREAM);
const otherStreamId = streamIdToBytes(OTHER_STREAM);

/** A fixed, non-trivial key, so that failures are reproducible. */
const keyBytes = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff);
const otherKeyBytes = Uint8Array.from({ length: 32 }, (_, i) => (i * 53 + 200) & 0xff);
const key = new EncryptionKey(keyBytes);
const otherKey = new EncryptionKey(otherKeyBytes);
const keys = key.forStream(streamId);

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** Every spelling of `bytes` a leak would likely use. */
function spellings(bytes: Uint8Array): string[] {
  const buffer = Buffer.from(bytes);
  return [
    buffer.toString('hex'),
    buffer.toString('hex').toUpperCase(),
    buffer.toString('base64'),
    buffer.toString('base64url'),
    [...bytes].join(','),
    [...bytes].join(', '),
    // A run of bytes as util.inspect prints a Buffer: "<Buffer 0b 30 ...>"
    [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' '),
  ];
}

function expectNoKeyMaterial(text: string, secret: Uint8Array = keyBytes): void {
  for (const spelling of spellings(secret)) expect(text, `leaks ${spelling}`).not.toContain(spelling);
}

/** Lays `plain` out as sealPayload expects it (behind the nonce, room for the tag), seals it and returns the payload. */
function seal(plain: Uint8Array, aad: Uint8Array, using: StreamKeys = keys): Uint8Array {
  const payload = new Uint8Array(plain.length + ENCRYPTION_OVERHEAD);
  payload.set(plain, NONCE_LENGTH);
  const length = sealPayload(using, aad, payload, plain.length);
  expect(length).toBe(plain.length + ENCRYPTION_OVERHEAD);
  return payload;
}

const aad = Uint8Array.from({ length: 80 }, (_, i) => i ^ 0x5a);
const plaintext = Buffer.from('the zstd frame of a chunk, or anything else: AES-GCM does not care '.repeat(20));

describe('EncryptionKey', () => {
  it('holds exactly 32 bytes and refuses any other length', () => {
    expect(ENCRYPTION_KEY_LENGTH).toBe(32);
    for (const length of [0, 1, 16, 24, 31, 33, 64]) {
      expect(() => new EncryptionKey(new Uint8Array(length).fill(7)), `${length} bytes`).toThrow(RangeError);
      expect(() => new EncryptionKey(new Uint8Array(length).fill(7))).toThrow(`got ${length}`);
    }
    expect(() => new EncryptionKey(randomBytes(32))).not.toThrow();
  });

  it('copies the bytes it is given: changing the caller’s buffer later does not change the key', () => {
    const bytes = Uint8Array.from(keyBytes);
    const copied = new EncryptionKey(bytes);
    bytes.fill(0);
    expect(copied.forStream(streamId).keyCheck).toBe(keys.keyCheck);
  });

  it('never shows its bytes: JSON, String(), template literals, util.inspect, util.format, console-style formatting', () => {
    const shown = [
      JSON.stringify(key),
      JSON.stringify({ key }),
      JSON.stringify([key], null, 2),
      String(key),
      `${key}`,
      // biome-ignore lint/style/useTemplate: string concatenation calls valueOf/toString on its own path
      '' + key,
      inspect(key),
      inspect(key, { showHidden: true, depth: Infinity }),
      inspect(key, { customInspect: false, showHidden: true }),
      inspect({ nested: { deeper: key } }, { depth: Infinity }),
      format('%s', key),
      format('%o', key),
      format('%O', key),
      format('%j', key),
      format('key:', key),
      format(key),
      JSON.stringify({ ...key }),
      JSON.stringify(Object.entries(key)),
      Object.getOwnPropertyNames(key).join(','),
    ];
    for (const text of shown) expectNoKeyMaterial(text);
    expect(JSON.stringify(key)).toBe('"[encryption key]"');
    expect(String(key)).toBe('[encryption key]');
    expect(inspect(key)).toMatch(/redacted/);
    expect(Object.keys(key)).toEqual([]);
  });

  it('an error about a wrong length does not show the bytes either', () => {
    const almost = Buffer.concat([keyBytes, Buffer.from([1])]);
    try {
      new EncryptionKey(almost);
    } catch (error) {
      expectNoKeyMaterial(String(error), almost);
      expectNoKeyMaterial(inspect(error), almost);
      return;
    }
    throw new Error('accepted 33 bytes');
  });

  describe('forStream', () => {
    it('is deterministic per key and stream id', () => {
      const again = new EncryptionKey(Uint8Array.from(keyBytes)).forStream(streamIdToBytes(STREAM));
      expect(hex(again.cipherKey)).toBe(hex(keys.cipherKey));
      expect(hex(again.digestKey)).toBe(hex(keys.digestKey));
      expect(hex(again.streamDigestKey)).toBe(hex(keys.streamDigestKey));
      expect(again.keyCheck).toBe(keys.keyCheck);
    });

    it('derives 32-byte keys and a 64-hex key check, all distinct from each other and from the key', () => {
      for (const derived of [keys.cipherKey, keys.digestKey, keys.streamDigestKey]) {
        expect(derived).toBeInstanceOf(Uint8Array);
        expect(derived.length).toBe(32);
      }
      expect(keys.keyCheck).toMatch(/^[0-9a-f]{64}$/);
      const all = [hex(keys.cipherKey), hex(keys.digestKey), hex(keys.streamDigestKey), keys.keyCheck, hex(keyBytes)];
      expect(new Set(all).size).toBe(all.length);
    });

    it('is HKDF-SHA256 of the key, salted with the 16 stream id bytes, one info string per key (FORMAT §2.5)', () => {
      const derive = (info: string) => hex(new Uint8Array(hkdfSync('sha256', keyBytes, streamId, info, 32)));
      expect(hex(keys.cipherKey)).toBe(derive('bucketpipe v1 chunk payload aes-256-gcm'));
      expect(hex(keys.digestKey)).toBe(derive('bucketpipe v1 raw digest hmac-sha256'));
      expect(hex(keys.streamDigestKey)).toBe(derive('bucketpipe v1 stream digest hmac-sha256'));
      expect(keys.keyCheck).toBe(derive('bucketpipe v1 key check'));
    });

    it('differs across stream ids and across keys', () => {
      const variants = [keys, key.forStream(otherStreamId), otherKey.forStream(streamId), otherKey.forStream(otherStreamId)];
      for (const field of ['cipherKey', 'digestKey', 'streamDigestKey'] as const) {
        expect(new Set(variants.map((v) => hex(v[field]))).size, field).toBe(4);
      }
      expect(new Set(variants.map((v) => v.keyCheck)).size).toBe(4);
      // One bit of the stream id is enough.
      const flipped = Uint8Array.from(streamId);
      flipped[15] = (flipped[15] as number) ^ 0x01;
      expect(key.forStream(flipped).keyCheck).not.toBe(keys.keyCheck);
      // One bit of the key is enough.
      const nearKey = Uint8Array.from(keyBytes);
      nearKey[0] = (nearKey[0] as number) ^ 0x80;
      expect(new EncryptionKey(nearKey).forStream(streamId).keyCheck).not.toBe(keys.keyCheck);
    });

    it('hands out fresh arrays: a caller that wipes its copy does not change the next derivation', () => {
      const first = key.forStream(streamId);
      first.cipherKey.fill(0);
      expect(hex(key.forStream(streamId).cipherKey)).toBe(hex(keys.cipherKey));
    });
  });

  it('manifestEncryption records the algorithm, the KDF and the key check, and no key', () => {
    const record = manifestEncryption(keys);
    expect(record).toEqual({ algorithm: 'aes-256-gcm', kdf: 'hkdf-sha256', keyCheck: keys.keyCheck });
    expect(ENCRYPTION_ALGORITHM).toBe('aes-256-gcm');
    expect(KEY_DERIVATION).toBe('hkdf-sha256');
    const json = JSON.stringify(record);
    expectNoKeyMaterial(json);
    for (const derived of [keys.cipherKey, keys.digestKey, keys.streamDigestKey]) expectNoKeyMaterial(json, derived);
  });
});

describe('sealPayload / openPayload', () => {
  it('round-trips, with the layout nonce ‖ ciphertext ‖ tag (12 + n + 16 bytes)', () => {
    expect([NONCE_LENGTH, TAG_LENGTH, ENCRYPTION_OVERHEAD]).toEqual([12, 16, 28]);
    const payload = seal(plaintext, aad);
    expect(payload.length).toBe(plaintext.length + 28);
    const ciphertext = payload.subarray(NONCE_LENGTH, payload.length - TAG_LENGTH);
    expect(Buffer.from(ciphertext).equals(plaintext)).toBe(false);
    // Not even a long run of the plaintext survives.
    expect(Buffer.from(payload).includes(plaintext.subarray(0, 16))).toBe(false);
    const opened = openPayload(keys, aad, payload);
    expect(opened && Buffer.from(opened).equals(plaintext)).toBe(true);
  });

  it('is standard AES-256-GCM under the cipher key: node:crypto decrypts it on its own', async () => {
    const { createDecipheriv } = await import('node:crypto');
    const payload = seal(plaintext, aad);
    const decipher = createDecipheriv('aes-256-gcm', keys.cipherKey, payload.subarray(0, 12));
    decipher.setAAD(aad);
    decipher.setAuthTag(payload.subarray(payload.length - 16));
    const plain = Buffer.concat([decipher.update(payload.subarray(12, payload.length - 16)), decipher.final()]);
    expect(plain.equals(plaintext)).toBe(true);
  });

  it('round-trips an empty plaintext and a single byte', () => {
    for (const plain of [new Uint8Array(0), Uint8Array.of(0x42)]) {
      const payload = seal(plain, aad);
      expect(payload.length).toBe(plain.length + 28);
      expect([...(openPayload(keys, aad, payload) ?? [-1])]).toEqual([...plain]);
    }
  });

  it('seals in place within a larger buffer and touches nothing beyond the payload', () => {
    const backing = new Uint8Array(plaintext.length + ENCRYPTION_OVERHEAD + 10).fill(0xee);
    backing.set(plaintext, NONCE_LENGTH);
    const length = sealPayload(keys, aad, backing, plaintext.length);
    expect([...backing.subarray(length)]).toEqual(Array(10).fill(0xee));
    expect(Buffer.from(openPayload(keys, aad, backing.subarray(0, length)) ?? []).equals(plaintext)).toBe(true);
  });

  it('gives null, never a plaintext, for a wrong key', () => {
    const payload = seal(plaintext, aad);
    for (const wrong of [key.forStream(otherStreamId), otherKey.forStream(streamId)]) expect(openPayload(wrong, aad, payload)).toBeNull();
    // The other keys of the same stream are not the cipher key either.
    expect(openPayload({ ...keys, cipherKey: keys.digestKey }, aad, payload)).toBeNull();
    expect(openPayload({ ...keys, cipherKey: keys.streamDigestKey }, aad, payload)).toBeNull();
  });

  it('gives null for any flipped byte of the nonce, the ciphertext or the tag', () => {
    const payload = seal(plaintext.subarray(0, 100), aad);
    for (let offset = 0; offset < payload.length; offset++) {
      const altered = Uint8Array.from(payload);
      altered[offset] = (altered[offset] as number) ^ 0x01;
      expect(openPayload(keys, aad, altered), `byte ${offset}`).toBeNull();
    }
  });

  it('gives null for changed, shortened, lengthened or missing associated data', () => {
    const payload = seal(plaintext, aad);
    for (let offset = 0; offset < aad.length; offset++) {
      const altered = Uint8Array.from(aad);
      altered[offset] = (altered[offset] as number) ^ 0x80;
      expect(openPayload(keys, altered, payload), `aad byte ${offset}`).toBeNull();
    }
    expect(openPayload(keys, aad.subarray(0, 79), payload)).toBeNull();
    expect(openPayload(keys, Buffer.concat([aad, Buffer.of(0)]), payload)).toBeNull();
    expect(openPayload(keys, new Uint8Array(0), payload)).toBeNull();
  });

  it('gives null for a truncated, an extended or a too-short payload', () => {
    const payload = seal(plaintext, aad);
    expect(openPayload(keys, aad, payload.subarray(0, payload.length - 1))).toBeNull();
    expect(openPayload(keys, aad, payload.subarray(1))).toBeNull();
    expect(openPayload(keys, aad, Buffer.concat([payload, Buffer.of(0)]))).toBeNull();
    for (const length of [0, 1, 12, 16, 27]) expect(openPayload(keys, aad, new Uint8Array(length)), `${length} bytes`).toBeNull();
    // 28 bytes of anything is a well-formed but unauthentic empty payload.
    expect(openPayload(keys, aad, randomBytes(28))).toBeNull();
  });

  it('uses a fresh random nonce for every seal: same plaintext, different nonce and ciphertext', () => {
    const a = seal(plaintext, aad);
    const b = seal(plaintext, aad);
    expect(hex(a.subarray(0, 12))).not.toBe(hex(b.subarray(0, 12)));
    expect(hex(a.subarray(12, a.length - 16))).not.toBe(hex(b.subarray(12, b.length - 16)));
    expect(hex(a.subarray(a.length - 16))).not.toBe(hex(b.subarray(b.length - 16)));
    const nonces = new Set<string>();
    const plain = new Uint8Array(16);
    for (let i = 0; i < 10_000; i++) {
      const nonce = hex(seal(plain, aad).subarray(0, NONCE_LENGTH));
      expect(nonce).not.toBe('000000000000000000000000');
      nonces.add(nonce);
    }
    expect(nonces.size).toBe(10_000);
  });

  it('overwrites whatever nonce bytes the buffer held (a reused slab must not reuse its nonce)', () => {
    const payload = new Uint8Array(plaintext.length + ENCRYPTION_OVERHEAD);
    payload.set(plaintext, NONCE_LENGTH);
    payload.fill(0xab, 0, NONCE_LENGTH);
    sealPayload(keys, aad, payload, plaintext.length);
    expect(hex(payload.subarray(0, NONCE_LENGTH))).not.toBe('ab'.repeat(12));
  });
});

describe('raw and stream digests', () => {
  const raw = Buffer.from('some raw chunk bytes');

  it('createRawDigest is SHA-256 without keys and HMAC-SHA256 with the digest key with them', () => {
    expect(createRawDigest(undefined).update(raw).digest().toString('hex')).toBe(createHash('sha256').update(raw).digest('hex'));
    const keyed = createRawDigest(keys).update(raw).digest().toString('hex');
    expect(keyed).toBe(createHmac('sha256', keys.digestKey).update(raw).digest('hex'));
    expect(keyed).not.toBe(createHash('sha256').update(raw).digest('hex'));
    expect(keyed).not.toBe(createRawDigest(key.forStream(otherStreamId)).update(raw).digest().toString('hex'));
    // Incremental updates give the same digest as one.
    expect(createRawDigest(keys).update(raw.subarray(0, 5)).update(raw.subarray(5)).digest().toString('hex')).toBe(keyed);
  });

  it('createStreamDigestHash keys with the stream digest key, not the raw digest key', () => {
    expect(createStreamDigestHash(keys).update(raw).digest().toString('hex')).toBe(
      createHmac('sha256', keys.streamDigestKey).update(raw).digest('hex'),
    );
    expect(createStreamDigestHash(keys).update(raw).digest().toString('hex')).not.toBe(
      createRawDigest(keys).update(raw).digest().toString('hex'),
    );
    expect(createStreamDigestHash(undefined).update(raw).digest().toString('hex')).toBe(createHash('sha256').update(raw).digest('hex'));
  });

  it('rawDigestName names the digest in use', () => {
    expect(rawDigestName(undefined)).toBe('raw SHA-256');
    expect(rawDigestName(keys)).toBe('raw HMAC-SHA256');
  });

  it('a keyed StreamDigest is the HMAC over the chunk digests, and differs from the plain one and another key’s', () => {
    const chunkDigests = [0, 1, 2].map((i) => createHash('sha256').update(`chunk ${i}`).digest());
    const digestWith = (k: StreamKeys | undefined) => {
      const digest = new StreamDigest(k);
      // Out of order on purpose: the digest folds them in chunk order.
      for (const i of [2, 0, 1]) digest.add(i, chunkDigests[i] as Uint8Array);
      return digest.digest();
    };
    const plain = digestWith(undefined);
    const keyed = digestWith(keys);
    expect(plain).toBe(createHash('sha256').update(Buffer.concat(chunkDigests)).digest('hex'));
    expect(keyed).toBe(createHmac('sha256', keys.streamDigestKey).update(Buffer.concat(chunkDigests)).digest('hex'));
    expect(keyed).toMatch(/^[0-9a-f]{64}$/);
    expect(keyed).not.toBe(plain);
    expect(keyed).not.toBe(digestWith(otherKey.forStream(streamId)));
    expect(keyed).not.toBe(digestWith(key.forStream(otherStreamId)));
    // A chunk whose raw bytes are the list of digests does not yield the stream digest.
    expect(keyed).not.toBe(createHmac('sha256', keys.digestKey).update(Buffer.concat(chunkDigests)).digest('hex'));
    expect(new StreamDigest(keys).digest()).toBe(createHmac('sha256', keys.streamDigestKey).digest('hex'));
  });

  it('sameDigest compares equal lengths only, without throwing on a length mismatch', () => {
    const a = createHash('sha256').update('a').digest();
    expect(sameDigest(a, Uint8Array.from(a))).toBe(true);
    const b = Uint8Array.from(a);
    b[31] = (b[31] as number) ^ 1;
    expect(sameDigest(a, b)).toBe(false);
    expect(sameDigest(a, a.subarray(0, 31))).toBe(false);
    expect(sameDigest(new Uint8Array(0), new Uint8Array(0))).toBe(true);
  });
});
