/** Deterministic test data: the same seed gives the same bytes on every run. */

/** Incompressible bytes from a seeded generator (mulberry32). */
export function randomBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(new ArrayBuffer(length));
  let state = seed >>> 0;
  for (let at = 0; at < length; at += 4) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const word = (t ^ (t >>> 14)) >>> 0;
    out[at] = word & 0xff;
    if (at + 1 < length) out[at + 1] = (word >>> 8) & 0xff;
    if (at + 2 < length) out[at + 2] = (word >>> 16) & 0xff;
    if (at + 3 < length) out[at + 3] = word >>> 24;
  }
  return out;
}

/** Highly compressible bytes: numbered text lines, like a log or a sparse file. */
export function compressibleBytes(length: number): Uint8Array {
  const out = new Uint8Array(new ArrayBuffer(length));
  let at = 0;
  for (let line = 0; at < length; line++) {
    const text = Buffer.from(`line ${line} of some highly repetitive test data\n`);
    out.set(text.subarray(0, Math.min(text.length, length - at)), at);
    at += text.length;
  }
  return out;
}

/** Partly compressible bytes, different for each seed: in every 64, 32 seeded random ones and 32 of a counter. */
export function partlyCompressibleBytes(length: number, seed = 1): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = i % 64 < 32 ? (x >>> 24) & 0xff : i & 0xff;
  }
  return bytes;
}

/** Yields `bytes` in pieces of `pieceSize` (views, not copies), like a pipe delivering a stream. */
export async function* pieces(bytes: Uint8Array, pieceSize: number): AsyncGenerator<Uint8Array, void, undefined> {
  for (let at = 0; at < bytes.length; at += pieceSize) {
    yield bytes.subarray(at, Math.min(at + pieceSize, bytes.length));
  }
}
