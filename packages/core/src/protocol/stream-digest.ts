import { createHash } from 'node:crypto';
import { createStreamDigestHash, type Digest, type StreamKeys } from './encryption.js';

/**
 * The end-to-end digest of a stream: SHA-256 over the raw digest of every chunk (32 bytes each),
 * in chunk order; for an encrypted stream HMAC-SHA256 with its stream digest key, so that only a
 * key holder can write the digest of a shortened or reordered stream. It covers every raw byte in
 * order as strongly as a SHA-256 of the whole stream, but reuses the per-chunk digests the codec
 * workers compute anyway, instead of hashing every byte a second time on one thread (about 0.5 CPU-s per GB on each side, measured on the 2-core bench
 * machine; see docs/PERFORMANCE.md). Chunks may be added out of order.
 */
export class StreamDigest {
  #hash: Digest;
  #next = 0;
  #early = new Map<number, Uint8Array>();

  constructor(keys?: StreamKeys) {
    this.#hash = createStreamDigestHash(keys);
  }

  /** Chunks folded into the digest so far (all chunks below this index). */
  get chunks(): number {
    return this.#next;
  }

  add(index: number, rawDigest: Uint8Array): void {
    if (rawDigest.length !== 32) throw new RangeError(`chunk ${index}: a raw digest has 32 bytes, got ${rawDigest.length}`);
    if (index < this.#next || this.#early.has(index)) throw new Error(`bug: chunk ${index} added to the stream digest twice`);
    this.#early.set(index, Uint8Array.from(rawDigest));
    for (let next = this.#early.get(this.#next); next; next = this.#early.get(this.#next)) {
      this.#early.delete(this.#next);
      this.#hash.update(next);
      this.#next++;
    }
  }

  /** Hex digest; every chunk from 0 on must have been added, none missing. */
  digest(): string {
    if (this.#early.size > 0) throw new Error(`bug: stream digest finished with chunk ${this.#next} missing`);
    return this.#hash.digest().toString('hex');
  }
}

/** The digest of a whole raw stream held in memory, cut into `chunkSize` chunks (tests, tools). */
export function streamDigestOf(bytes: Uint8Array, chunkSize: number): string {
  const digest = new StreamDigest();
  for (let index = 0, offset = 0; offset < bytes.length; index++, offset += chunkSize) {
    digest.add(
      index,
      createHash('sha256')
        .update(bytes.subarray(offset, offset + chunkSize))
        .digest(),
    );
  }
  return digest.digest();
}
