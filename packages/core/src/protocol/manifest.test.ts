import { describe, expect, it } from 'vitest';
import { ExitCode, StreamConflictError } from '../errors.js';
import { sendingManifest } from '../pipelines/pipeline-test-kit.js';
import { type ListedObject, type ObjectInfo, type ObjectStore, type PutOptions, type StoredObject, StoreError } from '../store/store.js';
import {
  createManifest,
  encodeManifest,
  expectedStreamBytes,
  MANIFEST_FORMAT,
  MANIFEST_KEY,
  type Manifest,
  parseManifest,
  readManifest,
  updateManifest,
} from './manifest.js';

const WHERE = 'mem://test/manifest.json';

const sending = (): Manifest => sendingManifest();

function complete(): Manifest {
  return {
    ...sending(),
    state: 'complete',
    watermark: 3,
    rawBytes: 2 * 16 * 1024 * 1024 + 5,
    final: { chunks: 3, rawBytes: 2 * 16 * 1024 * 1024 + 5, digest: 'ab'.repeat(32) },
  };
}

const bytesOf = (value: unknown) => Buffer.from(JSON.stringify(value));

function parseError(bytes: Uint8Array): StreamConflictError {
  try {
    parseManifest(bytes, WHERE);
  } catch (error) {
    expect(error).toBeInstanceOf(StreamConflictError);
    const conflict = error as StreamConflictError;
    expect(conflict.exitCode).toBe(ExitCode.conflict);
    expect(conflict.message).toContain(WHERE);
    return conflict;
  }
  throw new Error('parseManifest accepted it');
}

function expectMalformed(value: unknown, what: string | RegExp): void {
  const error = parseError(value instanceof Uint8Array ? value : bytesOf(value));
  expect(error.code).toBe('BP_MANIFEST_MALFORMED');
  if (typeof what === 'string') expect(error.message).toContain(what);
  else expect(error.message).toMatch(what);
}

describe('encodeManifest / parseManifest', () => {
  it('round-trips a sending, a complete and an aborted manifest', () => {
    const aborted: Manifest = { ...sending(), state: 'aborted', abortReason: 'source exited with status 1' };
    for (const manifest of [sending(), complete(), aborted]) {
      expect(parseManifest(encodeManifest(manifest), WHERE)).toEqual(manifest);
    }
  });

  it('writes pretty JSON ending in a newline', () => {
    const text = Buffer.from(encodeManifest(sending())).toString('utf8');
    expect(text.endsWith('}\n')).toBe(true);
    expect(text).toContain('\n  "format": "bucketpipe.manifest",\n');
  });

  it('parses a manifest that is a view into a larger buffer', () => {
    const encoded = encodeManifest(sending());
    const backing = new Uint8Array(encoded.length + 20).fill(0x20);
    backing.set(encoded, 7);
    expect(parseManifest(backing.subarray(7, 7 + encoded.length), WHERE).streamId).toBe(sending().streamId);
  });

  it('has a size that does not depend on the number of chunks', () => {
    const small = encodeManifest(complete()).length;
    const big = { ...complete(), watermark: 900_000_000, final: { ...complete().final, chunks: 900_000_000 } } as Manifest;
    expect(encodeManifest(big).length - small).toBe(2 * 8); // only the digits of two numbers grow
  });

  it('ignores unknown fields (forward compatible within a version)', () => {
    expect(parseManifest(bytesOf({ ...sending(), futureField: { x: 1 } }), WHERE).state).toBe('sending');
  });

  it('rejects bytes that are not JSON', () => {
    expectMalformed(Buffer.from('{"format": '), 'not valid JSON');
    expectMalformed(Buffer.from(''), 'not valid JSON');
    expectMalformed(Buffer.from([0xff, 0xfe, 0x7b]), 'not valid JSON');
  });

  it('rejects JSON that is not an object', () => {
    for (const value of [null, [], 42, 'manifest', true]) expectMalformed(value, 'not a JSON object');
  });

  it('rejects another format before looking at anything else', () => {
    expectMalformed({ ...sending(), format: 'bucketpipe.receiver' }, '"format" is not "bucketpipe.manifest"');
    const { format: _format, ...withoutFormat } = sending();
    expectMalformed(withoutFormat, '"format" is not "bucketpipe.manifest"');
  });

  it('rejects a newer version with BP_MANIFEST_VERSION, even when the rest would not validate', () => {
    for (const value of [
      { ...sending(), version: 2 },
      { format: MANIFEST_FORMAT, version: 2 },
    ]) {
      const error = parseError(bytesOf(value));
      expect(error.code).toBe('BP_MANIFEST_VERSION');
      expect(error.message).toContain('format version 2, newer than this bucketpipe understands (1): upgrade bucketpipe');
    }
  });

  it('rejects a version that is not exactly 1 but not newer', () => {
    for (const version of [0, -1, 0.5, '1', '2', null]) expectMalformed({ ...sending(), version }, '"version" must be 1');
    const { version: _version, ...withoutVersion } = sending();
    expectMalformed(withoutVersion, '"version" must be 1');
  });

  const invalid: Array<[field: string, values: unknown[], message: string]> = [
    ['streamId', [undefined, '', 'not-a-uuid', '0F8E2B7A-3C4D-4E5F-8A9B-1C2D3E4F5A6B', 42], '"streamId" must be a UUID'],
    ['createdAt', [undefined, 'yesterday', 0], '"createdAt"/"updatedAt" must be RFC 3339 times with a zone'],
    ['updatedAt', [undefined, 'soon', null], '"createdAt"/"updatedAt" must be RFC 3339 times with a zone'],
    ['chunkSize', [undefined, 0, -1, 1.5, '16777216', 2 ** 53, 65_535, 2 ** 30 + 1], '"chunkSize" must be an integer from 64 KiB to 1 GiB'],
    ['codec', [undefined, 'gzip', 1], '"codec" must be "zstd"'],
    ['level', [undefined, 1.5, '1', null, -8, 20], '"level" must be an integer from -7 to 19'],
    ['state', [undefined, 'done', 'SENDING', ''], '"state" must be sending, complete or aborted'],
    ['watermark', [undefined, -1, 0.5, '2', null], '"watermark" must be a non-negative integer'],
    ['rawBytes', [undefined, -1, 1.5, '0'], '"rawBytes"/"storedBytes" must be non-negative integers'],
    ['storedBytes', [undefined, -1, 1.5, '0'], '"rawBytes"/"storedBytes" must be non-negative integers'],
    ['sender', [undefined, null, 'src', []], '"sender" must have id, host and heartbeatAt'],
  ];
  for (const [field, values, message] of invalid) {
    it(`rejects a missing or invalid "${field}"`, () => {
      for (const value of values) expectMalformed({ ...sending(), [field]: value }, message);
    });
  }

  it('reads times only as RFC 3339 with a zone, not whatever Date.parse reads (FORMAT §4.1)', () => {
    for (const time of [
      '2026-11-25T10:58:32.844Z',
      '2026-11-25T10:58:32Z',
      '2026-11-25T11:58:32.844123+01:00',
      '2024-02-29T23:59:59-00:30',
    ]) {
      expect(parseManifest(bytesOf({ ...sending(), createdAt: time }), WHERE).createdAt).toBe(time);
    }
    const refused = [
      '2026-12-04',
      '2026-11-25 10:58:32Z',
      '2026-11-25T10:58:32',
      '2026-11-25t10:58:32z',
      'Fri, 04 Dec 2026 20:05:39 GMT',
      '2026-02-30T00:00:00Z',
      '2026-02-29T00:00:00Z',
      '2026-11-25T24:00:00Z',
      '2026-11-25T10:60:00Z',
      '2026-11-25T10:58:60Z',
      '2026-11-25T10:58:32+24:00',
      '2026-11-25T10:58:32+0100',
    ];
    for (const time of refused) {
      expectMalformed({ ...sending(), updatedAt: time }, '"createdAt"/"updatedAt" must be RFC 3339 times with a zone');
      expectMalformed({ ...sending(), sender: { ...sending().sender, heartbeatAt: time } }, '"sender" must have id, host and heartbeatAt');
    }
  });

  it('rejects a sender without id, host or a valid heartbeatAt', () => {
    const sender = sending().sender;
    for (const patch of [{ id: 1 }, { host: undefined }, { heartbeatAt: 'never' }]) {
      expectMalformed({ ...sending(), sender: { ...sender, ...patch } }, '"sender" must have id, host and heartbeatAt');
    }
  });

  it('accepts an optional "expectedRawBytes" (the sender\'s estimate) and rejects one that is not a count', () => {
    for (const expectedRawBytes of [0, 1, 1_288_490_189, Number.MAX_SAFE_INTEGER]) {
      expect(parseManifest(bytesOf({ ...sending(), expectedRawBytes }), WHERE).expectedRawBytes).toBe(expectedRawBytes);
    }
    expect(parseManifest(bytesOf(sending()), WHERE)).not.toHaveProperty('expectedRawBytes');
    for (const expectedRawBytes of [-1, 1.5, '1024', null, 2 ** 53, true]) {
      expectMalformed({ ...sending(), expectedRawBytes }, '"expectedRawBytes" must be a non-negative integer');
    }
  });

  it('knows the stream length: exact once complete, else the estimate above 0, else null', () => {
    expect(expectedStreamBytes(sending())).toBeNull();
    expect(expectedStreamBytes({ ...sending(), expectedRawBytes: 0 })).toBeNull();
    expect(expectedStreamBytes({ ...sending(), expectedRawBytes: 5000 })).toBe(5000);
    expect(expectedStreamBytes({ ...complete(), expectedRawBytes: 5000 })).toBe(2 * 16 * 1024 * 1024 + 5);
  });

  it('lists every problem at once', () => {
    const error = parseError(bytesOf({ ...sending(), codec: 'gzip', watermark: -1 }));
    expect(error.code).toBe('BP_MANIFEST_MALFORMED');
    expect(error.message).toContain('"codec" must be "zstd"; "watermark" must be a non-negative integer');
  });

  it('rejects a complete manifest without a valid final summary', () => {
    const need = 'a complete manifest needs "final" with chunks, rawBytes and digest';
    const { final, ...withoutFinal } = complete();
    expectMalformed(withoutFinal, need);
    expectMalformed({ ...complete(), final: null }, need);
    for (const patch of [
      { chunks: -1 },
      { chunks: '3' },
      { rawBytes: 1.5 },
      { digest: 'AB'.repeat(32) },
      { digest: 'ab' },
      { digest: undefined },
    ]) {
      expectMalformed({ ...complete(), final: { ...final, ...patch } }, need);
    }
  });

  it('rejects a complete manifest whose watermark is not final.chunks', () => {
    for (const watermark of [2, 4]) {
      expectMalformed({ ...complete(), watermark }, '"watermark" must equal "final.chunks" when complete');
    }
  });

  it('accepts a complete empty stream (zero chunks)', () => {
    const empty: Manifest = {
      ...sending(),
      state: 'complete',
      watermark: 0,
      rawBytes: 0,
      storedBytes: 0,
      final: { chunks: 0, rawBytes: 0, digest: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
    };
    expect(parseManifest(encodeManifest(empty), WHERE)).toEqual(empty);
  });
});

/** The smallest ObjectStore that honours create-only and If-Match, with counter ETags. */
class TinyStore implements ObjectStore {
  readonly description = 'mem://test';
  objects = new Map<string, StoredObject>();
  puts: Array<{ key: string; options: PutOptions | undefined }> = [];
  failNextPut: Error | undefined;
  #version = 0;

  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag: string }> {
    this.puts.push({ key, options });
    if (this.failNextPut) {
      const error = this.failNextPut;
      this.failNextPut = undefined;
      throw error;
    }
    const existing = this.objects.get(key);
    if (options?.ifNoneMatch && existing) throw new StoreError('precondition', `${key} exists`, { key });
    if (options?.ifMatch !== undefined && existing?.etag !== options.ifMatch) {
      throw new StoreError('precondition', `${key} is not at ${options.ifMatch}`, { key });
    }
    const etag = `"v${++this.#version}"`;
    this.objects.set(key, { body: Uint8Array.from(body), etag });
    return { etag };
  }

  async get(key: string): Promise<StoredObject | null> {
    return this.objects.get(key) ?? null;
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const object = this.objects.get(key);
    return object ? { size: object.body.length, etag: object.etag } : null;
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    for (const key of [...this.objects.keys()].sort()) {
      if (key.startsWith(prefix)) yield { key, size: this.objects.get(key)?.body.length ?? 0 };
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) this.objects.delete(key);
  }

  async close(): Promise<void> {}
}

async function rejection(promise: Promise<unknown>): Promise<StreamConflictError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StreamConflictError);
  return error as StreamConflictError;
}

describe('createManifest / updateManifest / readManifest', () => {
  it('reads null when there is no manifest', async () => {
    expect(await readManifest(new TinyStore())).toBeNull();
  });

  it('creates with a create-only precondition and reads back with the ETag', async () => {
    const store = new TinyStore();
    const etag = await createManifest(store, sending());
    expect(store.puts).toEqual([{ key: MANIFEST_KEY, options: { ifNoneMatch: true } }]);
    expect(MANIFEST_KEY).toBe('manifest.json');
    expect(await readManifest(store)).toEqual({ manifest: sending(), etag });
  });

  it('refuses a second sender on the same root with BP_STREAM_EXISTS naming the first', async () => {
    const store = new TinyStore();
    await createManifest(store, sending());
    const error = await rejection(createManifest(store, { ...sending(), streamId: '11111111-2222-4333-8444-555555555555' }));
    expect(error.code).toBe('BP_STREAM_EXISTS');
    expect(error.exitCode).toBe(ExitCode.conflict);
    expect(error.message).toContain('already has a sender (src:123 on src');
    expect(error.cause).toBeInstanceOf(StoreError);
    expect((error.cause as StoreError).kind).toBe('precondition');
    expect((await readManifest(store))?.manifest.streamId).toBe(sending().streamId); // untouched
  });

  it('says the existing stream is complete when it is', async () => {
    const store = new TinyStore();
    await createManifest(store, complete());
    const error = await rejection(createManifest(store, sending()));
    expect(error.code).toBe('BP_STREAM_EXISTS');
    expect(error.message).toContain('already exists and is complete');
  });

  it('passes other store errors through unchanged', async () => {
    const store = new TinyStore();
    const auth = new StoreError('auth', 'access denied');
    store.failNextPut = auth;
    await expect(createManifest(store, sending())).rejects.toBe(auth);
    const etag = await createManifest(store, sending());
    const transient = new StoreError('transient', 'socket hang up');
    store.failNextPut = transient;
    await expect(updateManifest(store, sending(), etag)).rejects.toBe(transient);
  });

  it('updates with If-Match on the last ETag and returns the new one', async () => {
    const store = new TinyStore();
    const first = await createManifest(store, sending());
    const next = { ...sending(), watermark: 5, rawBytes: 5 * 16 * 1024 * 1024 };
    const second = await updateManifest(store, next, first);
    expect(second).not.toBe(first);
    expect(store.puts[1]).toEqual({ key: MANIFEST_KEY, options: { ifMatch: first } });
    expect(await readManifest(store)).toEqual({ manifest: next, etag: second });
    await updateManifest(store, complete(), second);
    expect((await readManifest(store))?.manifest.state).toBe('complete');
  });

  it('detects a lost race: a stale ETag fails with BP_MANIFEST_RACE and changes nothing', async () => {
    const store = new TinyStore();
    const first = await createManifest(store, sending());
    const second = await updateManifest(store, { ...sending(), watermark: 3 }, first);
    const error = await rejection(updateManifest(store, { ...sending(), watermark: 9 }, first));
    expect(error.code).toBe('BP_MANIFEST_RACE');
    expect(error.exitCode).toBe(ExitCode.conflict);
    expect(error.message).toContain('mem://test/manifest.json');
    expect(await readManifest(store)).toEqual({ manifest: { ...sending(), watermark: 3 }, etag: second });
  });

  it('readManifest rejects a damaged manifest naming where it is', async () => {
    const store = new TinyStore();
    await store.put(MANIFEST_KEY, Buffer.from('not json'));
    const error = await rejection(readManifest(store));
    expect(error.code).toBe('BP_MANIFEST_MALFORMED');
    expect(error.message).toContain('manifest mem://test/manifest.json is malformed (not valid JSON)');
  });
});

describe('manifest invariants and lost replies', () => {
  it('rejects an absurd chunk size, byte counts that contradict "final", and "final" outside complete', () => {
    expectMalformed({ ...sending(), chunkSize: 2 ** 50 }, '"chunkSize" must be an integer from 64 KiB to 1 GiB');
    expectMalformed({ ...complete(), rawBytes: 1 }, '"rawBytes" must equal "final.rawBytes" when complete');
    const overfull = complete();
    const tooMany = 3 * overfull.chunkSize + 1;
    expectMalformed({ ...overfull, rawBytes: tooMany, final: { ...overfull.final, rawBytes: tooMany } }, 'does not fit');
    expectMalformed({ ...sending(), final: complete().final }, '"final" belongs only to a complete manifest');
    expectMalformed({ ...sending(), updatedAt: 'Tuesday' }, '"createdAt"/"updatedAt" must be RFC 3339 times with a zone');
  });

  it('treats a retried create that finds its own manifest as done (the first reply was lost)', async () => {
    const store = new TinyStore();
    const first = await createManifest(store, sending());
    expect(await createManifest(store, sending())).toBe(first);
  });

  it('treats a retried update that finds exactly its bytes as done, and any other content as a race', async () => {
    const store = new TinyStore();
    const etag = await createManifest(store, sending());
    const next = { ...sending(), watermark: 3 };
    const landed = await updateManifest(store, next, etag);
    expect(await updateManifest(store, next, etag)).toBe(landed);
    const error = await rejection(updateManifest(store, { ...next, watermark: 4 }, etag));
    expect(error.code).toBe('BP_MANIFEST_RACE');
  });
});
