import { createHash } from 'node:crypto';

// Written here rather than taken from @google-cloud/storage, so that a bug in the client's CRC32C
// cannot cancel out against the same bug in the server that is meant to test it.
const table = (() => {
  const entries = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    entries[n] = c >>> 0;
  }
  return entries;
})();

/** CRC32C (Castagnoli) of the bytes, as GCS reports it: 4 bytes big-endian, base64. */
export function crc32cBase64(bytes: Uint8Array): string {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = (table[(crc ^ (bytes[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((crc ^ 0xffffffff) >>> 0);
  return out.toString('base64');
}

export function md5Base64(bytes: Uint8Array): string {
  return createHash('md5').update(bytes).digest('base64');
}

/** Parses an `X-Goog-Hash: crc32c=…,md5=…` header. */
export function parseGoogHash(header: string | undefined): { crc32c?: string; md5?: string } {
  const out: { crc32c?: string; md5?: string } = {};
  for (const part of (header ?? '').split(',')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    const name = part.slice(0, eq).trim().toLowerCase();
    const value = part.slice(eq + 1).trim();
    if (name === 'crc32c') out.crc32c = value;
    if (name === 'md5') out.md5 = value;
  }
  return out;
}
