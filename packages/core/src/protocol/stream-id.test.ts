import { describe, expect, it } from 'vitest';
import { isStreamId, newStreamId, streamIdFromBytes, streamIdToBytes } from './stream-id.js';

const ID = '0f8e2b7a-3c4d-4e5f-8a9b-1c2d3e4f5a6b';

describe('stream ids', () => {
  it('are fresh lowercase version-4 UUIDs', () => {
    const ids = new Set(Array.from({ length: 100 }, newStreamId));
    expect(ids.size).toBe(100);
    for (const id of ids) {
      expect(isStreamId(id)).toBe(true);
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
  });

  it('accept only the canonical lowercase 8-4-4-4-12 form', () => {
    expect(isStreamId(ID)).toBe(true);
    for (const bad of [
      ID.toUpperCase(),
      ID.replaceAll('-', ''),
      `{${ID}}`,
      `${ID} `,
      `urn:uuid:${ID}`,
      ID.slice(0, -1),
      `${ID.slice(0, -1)}g`,
      '',
      null,
      undefined,
      42,
      Buffer.from(ID),
    ]) {
      expect([bad, isStreamId(bad)]).toEqual([bad, false]);
    }
  });

  it('travel as 16 raw bytes in the order the hex digits are written', () => {
    const bytes = streamIdToBytes(ID);
    expect(bytes.length).toBe(16);
    expect(Buffer.from(bytes).toString('hex')).toBe('0f8e2b7a3c4d4e5f8a9b1c2d3e4f5a6b');
    expect(streamIdFromBytes(bytes)).toBe(ID);
  });

  it('read back from a view into a larger buffer', () => {
    const backing = new Uint8Array(40).fill(0xff);
    backing.set(streamIdToBytes(ID), 8);
    expect(streamIdFromBytes(backing.subarray(8, 24))).toBe(ID);
  });

  it('refuse to encode text that is not a stream id', () => {
    expect(() => streamIdToBytes(ID.toUpperCase())).toThrow(TypeError);
    expect(() => streamIdToBytes('nope')).toThrow('not a stream id: nope');
  });
});
