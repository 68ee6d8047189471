import { randomUUID } from 'node:crypto';

/** Stream ids are UUIDs: text in the manifest, 16 raw bytes in chunk headers. */
export function newStreamId(): string {
  return randomUUID();
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isStreamId(value: unknown): value is string {
  return typeof value === 'string' && uuidPattern.test(value);
}

export function streamIdToBytes(id: string): Uint8Array {
  if (!isStreamId(id)) throw new TypeError(`not a stream id: ${id}`);
  return Buffer.from(id.replaceAll('-', ''), 'hex');
}

export function streamIdFromBytes(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
