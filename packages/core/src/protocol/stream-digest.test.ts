import { createHash, createHmac, hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EncryptionKey } from './encryption.js';
import { StreamDigest, streamDigestOf } from './stream-digest.js';

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest();

describe('StreamDigest', () => {
  it('is SHA-256 over the chunk digests in chunk order, whatever order they arrive in', () => {
    const chunks = [Buffer.from('alpha'), Buffer.from('beta'), Buffer.from('gamma')];
    const expected = createHash('sha256')
      .update(Buffer.concat(chunks.map((c) => sha(c))))
      .digest('hex');
    const digest = new StreamDigest();
    digest.add(2, sha(chunks[2] as Buffer));
    digest.add(0, sha(chunks[0] as Buffer));
    expect(digest.chunks).toBe(1);
    digest.add(1, sha(chunks[1] as Buffer));
    expect(digest.chunks).toBe(3);
    expect(digest.digest()).toBe(expected);
  });

  it('differs when two chunks swap places or one byte changes', () => {
    const data = Buffer.alloc(300, 1);
    data[250] = 2;
    const base = streamDigestOf(data, 100);
    const swapped = Buffer.concat([data.subarray(200), data.subarray(100, 200), data.subarray(0, 100)]);
    expect(streamDigestOf(swapped, 100)).not.toBe(base);
    const changed = Buffer.from(data);
    changed[5] = 9;
    expect(streamDigestOf(changed, 100)).not.toBe(base);
  });

  it('of an empty stream is the SHA-256 of nothing', () => {
    expect(new StreamDigest().digest()).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('of an empty encrypted stream is the HMAC-SHA256 of nothing under the stream digest key (FORMAT §4.4)', () => {
    const key = Buffer.alloc(32).map((_, i) => i + 1);
    const streamId = Buffer.from('0f8e2b7a3c4d4e5f8a9b1c2d3e4f5a6b', 'hex');
    // Derived as the document says, not through the code under test.
    const streamDigestKey = Buffer.from(hkdfSync('sha256', key, streamId, 'bucketpipe v1 stream digest hmac-sha256', 32));
    const expected = createHmac('sha256', streamDigestKey).digest('hex');
    expect(new StreamDigest(new EncryptionKey(key).forStream(streamId)).digest()).toBe(expected);
    expect(expected).not.toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('refuses a chunk twice, a digest of the wrong size, and finishing with a gap', () => {
    const digest = new StreamDigest();
    digest.add(0, sha(Buffer.from('x')));
    expect(() => digest.add(0, sha(Buffer.from('x')))).toThrow('twice');
    expect(() => digest.add(1, new Uint8Array(31))).toThrow('32 bytes');
    digest.add(2, sha(Buffer.from('z')));
    expect(() => digest.digest()).toThrow('chunk 1 missing');
  });
});
