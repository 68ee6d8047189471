// The GCS test server (test/servers/gcs-server), exercised only through the real
// @google-cloud/storage client, so that what it accepts is what the client really sends.
import { createHash, randomBytes } from 'node:crypto';
import { type File, IdempotencyStrategy, Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GcsJsonApiServer, startGcsServer } from '../../../test/servers/gcs.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('base64');

let server: GcsJsonApiServer;
let endpoint: string;
let stop: () => Promise<void>;
let storage: Storage;
const bucketName = 'protocol';

beforeAll(async () => {
  const started = await startGcsServer();
  server = started.server;
  endpoint = started.connection.endpoint;
  stop = started.stop;
  storage = new Storage({ apiEndpoint: endpoint, projectId: 'test', retryOptions: { autoRetry: false } });
  await storage.createBucket(bucketName);
});
afterAll(() => stop());

const bucket = () => storage.bucket(bucketName);
interface ClientError {
  /** The HTTP status: ApiError has it as `code`, GaxiosError (resumable session requests) as `status`. */
  code?: unknown;
  message: string;
  errors?: Array<{ reason?: string }>;
}

/** The error a promise rejected with (fails the test when it fulfilled). */
async function failure(promise: Promise<unknown>): Promise<ClientError> {
  const outcome = await promise.then(
    () => undefined,
    (error: unknown) => error as ClientError & { status?: unknown },
  );
  if (!outcome) throw new Error('expected the call to fail');
  return typeof outcome.code === 'number' ? outcome : { ...outcome, message: outcome.message, code: outcome.status };
}

function writeStream(file: File, body: Buffer, options: Parameters<File['createWriteStream']>[0]): Promise<void> {
  return new Promise((resolve, reject) => {
    file.createWriteStream(options).on('error', reject).on('finish', resolve).end(body);
  });
}

const requestsSince = (mark: number) => server.log.slice(mark);

describe('buckets', () => {
  it('creates, gets and reports missing buckets in Google’s error shape', async () => {
    const [metadata] = await storage.bucket(bucketName).getMetadata();
    expect(metadata).toMatchObject({ kind: 'storage#bucket', name: bucketName });
    expect((await storage.bucket('absent-bucket').exists())[0]).toBe(false);
    const missing = await failure(storage.bucket('absent-bucket').file('x').getMetadata());
    expect(missing.code).toBe(404);
    expect(missing.message).toBe('The specified bucket does not exist.');
    expect(missing.errors?.[0]?.reason).toBe('notFound');
    expect((await failure(storage.createBucket(bucketName))).code).toBe(409);
    const [buckets] = await storage.getBuckets();
    expect(buckets.map((b) => b.name)).toContain(bucketName);
  });
});

describe('uploads', () => {
  it('multipart upload (resumable: false) stores the bytes and reports size, generation, md5Hash and crc32c', async () => {
    const mark = server.log.length;
    const file = bucket().file('multi/one');
    await file.save(Buffer.from('123456789'), { resumable: false, contentType: 'text/plain' });
    expect(requestsSince(mark).map((r) => r.query.uploadType)).toEqual(['multipart']);
    const [metadata] = await file.getMetadata();
    expect(metadata).toMatchObject({ name: 'multi/one', bucket: bucketName, size: '9', contentType: 'text/plain', metageneration: '1' });
    expect(metadata.generation).toMatch(/^\d+$/);
    // CRC32C("123456789") = 0xE3069283, the standard check value.
    expect(metadata.crc32c).toBe(Buffer.from([0xe3, 0x06, 0x92, 0x83]).toString('base64'));
    expect(metadata.md5Hash).toBe(md5(Buffer.from('123456789')));
  });

  it('the client’s own upload validation (crc32c and md5) passes against the reported hashes', async () => {
    const body = randomBytes(300 * KiB + 5);
    for (const validation of ['crc32c', 'md5'] as const) {
      for (const resumable of [false, true]) {
        const file = bucket().file(`validated/${validation}-${resumable}`);
        await file.save(body, { resumable, validation });
        expect((await file.download())[0].equals(body)).toBe(true);
      }
    }
  });

  it('simple media upload (uploadType=media) through the client’s request machinery', async () => {
    const file = bucket().file('media/one');
    const [resource] = (await file.request({
      method: 'POST',
      uri: `${endpoint}/upload/storage/v1/b/${bucketName}/o`,
      qs: { uploadType: 'media', name: 'media/one', ifGenerationMatch: 0 },
      headers: { 'Content-Type': 'application/octet-stream' },
      body: Buffer.from('media bytes'),
    })) as unknown as [Record<string, unknown>];
    expect(resource).toMatchObject({ name: 'media/one', size: '11' });
    expect((await file.download())[0].toString()).toBe('media bytes');
  });

  it('a multipart upload whose metadata md5Hash does not match the bytes is refused with 400 and stores nothing', async () => {
    const file = bucket().file('multi/bad-md5');
    const error = await failure(file.save(Buffer.from('abc'), { resumable: false, metadata: { md5Hash: md5(Buffer.from('abd')) } }));
    expect(error.code).toBe(400);
    expect((await file.exists())[0]).toBe(false);
  });

  it('a resumable upload in 256 KiB chunks gets a 308 with Range after each chunk but the last, then the object', async () => {
    const body = randomBytes(MiB + 1234);
    const mark = server.log.length;
    const file = bucket().file('resumable/chunked');
    await writeStream(file, body, { resumable: true, chunkSize: 256 * KiB, validation: 'crc32c' });
    const log = requestsSince(mark);
    expect(log[0]).toMatchObject({ method: 'POST', query: { uploadType: 'resumable', name: 'resumable/chunked' }, status: 200 });
    const puts = log.filter((r) => r.method === 'PUT');
    expect(puts.map((r) => r.contentRange)).toEqual([
      `bytes 0-${256 * KiB - 1}/*`,
      `bytes ${256 * KiB}-${512 * KiB - 1}/*`,
      `bytes ${512 * KiB}-${768 * KiB - 1}/*`,
      `bytes ${768 * KiB}-${MiB - 1}/*`,
      `bytes ${MiB}-${MiB + 1233}/${MiB + 1234}`,
    ]);
    expect(puts.map((r) => r.status)).toEqual([308, 308, 308, 308, 200]);
    expect((await file.download())[0].equals(body)).toBe(true);
  });

  it('a resumable upload in one request (no chunkSize) streams with Content-Range bytes 0-*/*', async () => {
    const body = randomBytes(3 * MiB);
    const mark = server.log.length;
    const file = bucket().file('resumable/single');
    await writeStream(file, body, { resumable: true });
    expect(requestsSince(mark).map((r) => [r.method, r.contentRange, r.status])).toEqual([
      ['POST', undefined, 200],
      ['PUT', 'bytes 0-*/*', 200],
    ]);
    expect((await file.download())[0].equals(body)).toBe(true);
  });

  for (const when of ['before', 'after'] as const) {
    it(`a resumable upload resumes after a reset connection (chunk ${when === 'before' ? 'lost' : 'stored, response lost'}): status query, 308 Range, rest`, async () => {
      const retrying = new Storage({
        apiEndpoint: endpoint,
        retryOptions: { autoRetry: true, maxRetries: 3, retryDelayMultiplier: 1.1, idempotencyStrategy: IdempotencyStrategy.RetryAlways },
      });
      const body = randomBytes(MiB + 99);
      server.faults.add({ method: 'PUT', match: 'upload_id=', skip: 2, reset: true, when });
      const mark = server.log.length;
      const file = retrying.bucket(bucketName).file(`resumable/reset-${when}`);
      await writeStream(file, body, { resumable: true, chunkSize: 256 * KiB });
      const queries = requestsSince(mark).filter((r) => r.contentRange === 'bytes */*');
      const stored = when === 'before' ? 512 * KiB : 768 * KiB;
      expect(queries).toEqual([expect.objectContaining({ method: 'PUT', status: 308 })]);
      const log = requestsSince(mark);
      const next = log[log.findIndex((r) => r.contentRange === 'bytes */*') + 1];
      expect(next?.contentRange).toMatch(new RegExp(`^bytes ${stored}-`));
      expect((await file.download())[0].equals(body)).toBe(true);
    });
  }

  it('ifGenerationMatch: 0 creates only, a stale generation is refused with 412 (both upload types)', async () => {
    for (const resumable of [false, true]) {
      const file = bucket().file(`conditional/${resumable}`);
      await file.save(Buffer.from('v1'), { resumable, preconditionOpts: { ifGenerationMatch: 0 } });
      const [first] = await file.getMetadata();
      const exists = await failure(file.save(Buffer.from('again'), { resumable, preconditionOpts: { ifGenerationMatch: 0 } }));
      expect(exists.code).toBe(412);
      await file.save(Buffer.from('v2'), { resumable, preconditionOpts: { ifGenerationMatch: first.generation as string } });
      const [second] = await file.getMetadata();
      expect(BigInt(second.generation as string)).toBeGreaterThan(BigInt(first.generation as string));
      const stale = await failure(
        file.save(Buffer.from('v3'), { resumable, preconditionOpts: { ifGenerationMatch: first.generation as string } }),
      );
      expect(stale.code).toBe(412);
      expect((await file.download())[0].toString()).toBe('v2');
    }
  });

  it('a 412 carries Google’s error shape (reason conditionNotMet); metageneration preconditions work on get and delete', async () => {
    const file = bucket().file('conditional/shape');
    await file.save(Buffer.from('x'), { resumable: false });
    const error = await failure(file.save(Buffer.from('y'), { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }));
    expect(error.errors?.[0]?.reason).toBe('conditionNotMet');
    expect((await failure(file.getMetadata({ ifMetagenerationMatch: 2 }))).code).toBe(412);
    const [metadata] = await file.getMetadata({ ifMetagenerationMatch: 1 });
    expect((await failure(file.delete({ ifGenerationMatch: Number(metadata.generation) + 1 }))).code).toBe(412);
    await file.delete({ ifGenerationMatch: metadata.generation as string });
    expect((await file.exists())[0]).toBe(false);
  });
});

describe('downloads', () => {
  const body = randomBytes(2 * MiB + 3);
  beforeAll(async () => {
    await bucket().file('download/blob').save(body, { resumable: false });
  });

  it('downloads whole objects with the client’s crc32c and md5 validation on', async () => {
    for (const validation of ['crc32c', 'md5'] as const) {
      const [got] = await bucket().file('download/blob').download({ validation });
      expect(got.equals(body)).toBe(true);
    }
  });

  it('serves byte ranges (206) with start/end, and a range reaching past the end is clamped', async () => {
    const file = bucket().file('download/blob');
    expect((await file.download({ start: 10, end: 19 }))[0].equals(body.subarray(10, 20))).toBe(true);
    expect((await file.download({ start: MiB }))[0].equals(body.subarray(MiB))).toBe(true);
    expect((await file.download({ start: body.length - 2, end: body.length + 100 }))[0].equals(body.subarray(-2))).toBe(true);
    expect((await failure(file.download({ start: body.length, end: body.length + 5 }))).code).toBe(416);
  });

  it('a missing object is 404 "No such object" in Google’s error shape', async () => {
    const error = await failure(bucket().file('download/absent').download());
    expect(error.code).toBe(404);
    expect(error.message).toContain('No such object: protocol/download/absent');
    expect((await failure(bucket().file('download/absent').getMetadata())).code).toBe(404);
  });
});

describe('listing and deleting', () => {
  const names = ['l/B', 'l/_', 'l/a', 'l/a-b', 'l/a.b', 'l/a/b', 'l/a/c', 'l/a0', 'l/b/c/d', 'l/z'];
  beforeAll(async () => {
    for (const name of [...names].reverse()) await bucket().file(name).save(Buffer.from(name), { resumable: false });
    await bucket().file('m/other').save(Buffer.from('x'), { resumable: false });
  });

  it('lists by prefix in byte order, page by page (maxResults, pageToken)', async () => {
    const [all] = await bucket().getFiles({ prefix: 'l/' });
    expect(all.map((f) => f.name)).toEqual(names);
    const seen: string[] = [];
    type Query = { prefix: string; maxResults: number; autoPaginate: false; pageToken?: string };
    let query: Query | null = { prefix: 'l/', maxResults: 3, autoPaginate: false };
    let pages = 0;
    while (query) {
      const [files, next] = await bucket().getFiles(query);
      seen.push(...files.map((f) => f.name));
      expect(files.length).toBeLessThanOrEqual(3);
      query = next as Query | null;
      pages++;
    }
    expect(seen).toEqual(names);
    expect(pages).toBe(4);
  });

  it('startOffset and endOffset bound the listing (inclusive start, exclusive end), also across pages', async () => {
    const [files] = await bucket().getFiles({ prefix: 'l/', startOffset: 'l/a-b', endOffset: 'l/a0' });
    expect(files.map((f) => f.name)).toEqual(['l/a-b', 'l/a.b', 'l/a/b', 'l/a/c']);
    // Page by page (the client's maxResults with autoPaginate is a total, not a page size).
    const paged: string[] = [];
    let pageToken: string | undefined;
    do {
      const [files, next] = await bucket().getFiles({
        startOffset: 'l/a',
        endOffset: 'm',
        maxResults: 2,
        autoPaginate: false,
        ...(pageToken ? { pageToken } : {}),
      });
      paged.push(...files.map((f) => f.name));
      pageToken = (next as { pageToken?: string } | null)?.pageToken;
    } while (pageToken);
    expect(paged).toEqual(names.slice(2));
  });

  it('a delimiter folds deeper names into prefixes', async () => {
    const [files, , response] = (await bucket().getFiles({ prefix: 'l/', delimiter: '/', autoPaginate: false })) as [
      File[],
      unknown,
      { prefixes?: string[] },
    ];
    expect(files.map((f) => f.name)).toEqual(['l/B', 'l/_', 'l/a', 'l/a-b', 'l/a.b', 'l/a0', 'l/z']);
    expect(response.prefixes).toEqual(['l/a/', 'l/b/']);
  });

  it('deletes, and deleting an absent object is a 404 (which ignoreNotFound hides)', async () => {
    await bucket().file('m/other').delete();
    const error = await failure(bucket().file('m/other').delete());
    expect(error.code).toBe(404);
    await bucket().file('m/other').delete({ ignoreNotFound: true });
  });
});

describe('paths', () => {
  it('serves the API under /storage/v1 only, like Google: the bare /b/… a client given only STORAGE_EMULATOR_HOST calls is a 404', async () => {
    const saved = process.env.STORAGE_EMULATOR_HOST;
    process.env.STORAGE_EMULATOR_HOST = endpoint;
    try {
      const emulated = new Storage({ retryOptions: { autoRetry: false } });
      const mark = server.log.length;
      const error = await failure(emulated.bucket(bucketName).file('emulator/x').download());
      expect(error.code).toBe(404);
      expect(requestsSince(mark).map((r) => [r.path, r.status])).toEqual([[`/b/${bucketName}/o/emulator%2Fx`, 404]]);
    } finally {
      if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
      else process.env.STORAGE_EMULATOR_HOST = saved;
    }
  });
});
