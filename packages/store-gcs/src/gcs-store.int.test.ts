import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { openStore, type StoreError } from '@bucketpipe/core';
import { describeStoreConformance, expectStoreError } from '@bucketpipe/store-testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { GCS_TEST_BUCKET, type GcsJsonApiServer, startGcsServer } from '../../../test/servers/gcs.js';
import { GcsObjectStore } from './gcs-store.js';
import { registerGcsStore } from './index.js';

const { endpoint } = inject('gcs');
const bucket = GCS_TEST_BUCKET;
const run = `store-${process.pid}-${Date.now()}`;
let serial = 0;
/** A fresh, empty stream root in the shared server's bucket. */
const freshPrefix = () => `${run}/s${++serial}`;
const text = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('utf8') : undefined);
const MiB = 1024 * 1024;

describeStoreConformance('GcsObjectStore', () => GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint }));

// The same suite with every upload on the resumable path, so that both upload types keep the contract.
describeStoreConformance(
  'GcsObjectStore (resumable uploads only)',
  () => GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint, resumableThreshold: 0 }),
  { manyKeys: 1_001 },
);

describe('GcsObjectStore against the GCS test server', () => {
  it('opens gs:// URLs through the registry, with gcsEndpoint, at the bucket root and below a prefix', async () => {
    registerGcsStore();
    const prefix = freshPrefix();
    const store = await openStore(`gs://${bucket}/${prefix}`, { gcsEndpoint: endpoint, concurrency: '4' });
    expect(store.description).toBe(`gs://${bucket}/${prefix}`);
    await store.put('manifest.json', text('{}'));
    const root = await openStore(`gs://${bucket}`, { gcsEndpoint: `${endpoint}/` });
    expect(await root.head(`${prefix}/manifest.json`)).toEqual({ size: 2, etag: expect.stringMatching(/^\d+$/) });
    await Promise.all([store.close(), root.close()]);
  });

  it('refuses a gcsEndpoint that is not an http(s) URL, as a usage error', async () => {
    registerGcsStore();
    await expect(openStore(`gs://${bucket}/x`, { gcsEndpoint: 'localhost:4443' })).rejects.toMatchObject({ code: 'BP_GCS_ENDPOINT' });
  });

  it('a missing bucket is not-found at open, at once, naming the bucket', async () => {
    const started = Date.now();
    const error = await expectStoreError(GcsObjectStore.open({ bucket: 'no-such-bucket-here', prefix: 'p', endpoint }), 'not-found');
    expect(error.message).toContain('gs://no-such-bucket-here');
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('a closed port is a fatal error at open, at once, naming the endpoint', async () => {
    const closed = await closedPort();
    const started = Date.now();
    const error = await expectStoreError(GcsObjectStore.open({ bucket, prefix: 'p', endpoint: closed }), 'fatal');
    expect(error.message).toContain(closed);
    expect(error.message).toContain('ECONNREFUSED');
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('etags are generations: create-only is ifGenerationMatch=0, compare-and-swap is ifGenerationMatch=<etag>', async () => {
    const store = await GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint });
    const first = await store.put('m', text('1'), { ifNoneMatch: true });
    expect(first.etag).toMatch(/^\d+$/);
    const second = await store.put('m', text('2'), { ifMatch: first.etag });
    expect(BigInt(second.etag)).toBeGreaterThan(BigInt(first.etag));
    await expectStoreError(store.put('m', text('x'), { ifMatch: '0' }), 'precondition'); // not "must not exist"
    await expectStoreError(store.put('m', text('x'), { ifMatch: `${second.etag} ` }), 'precondition');
    expect(decode((await store.get('m'))?.body)).toBe('2');
  });

  it('create-only and compare-and-swap races over both upload types have exactly one winner', async () => {
    const multipart = await GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint });
    const resumable = await GcsObjectStore.open({
      bucket,
      prefix: multipart.description.split('/').slice(3).join('/'),
      endpoint,
      resumableThreshold: 0,
    });
    const racers = [multipart, resumable, multipart, resumable, multipart, resumable];
    const created = await Promise.allSettled(racers.map((store, i) => store.put('race', text(`r${i}`), { ifNoneMatch: true })));
    expect(created.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of created) if (r.status === 'rejected') expect((r.reason as StoreError).kind).toBe('precondition');
    const from = (await multipart.head('race'))?.etag as string;
    const swapped = await Promise.allSettled(racers.map((store, i) => store.put('race', text(`s${i}`), { ifMatch: from })));
    expect(swapped.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of swapped) if (r.status === 'rejected') expect((r.reason as StoreError).kind).toBe('precondition');
  });

  it('an object above the resumable threshold round-trips byte for byte, with range reads', async () => {
    const store = await GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint, resumableThreshold: 4 * MiB });
    const body = randomBytes(9 * MiB + 77);
    const { etag } = await store.put('chunks/000000000000', body, { ifNoneMatch: true });
    const got = await store.get('chunks/000000000000');
    expect(got && Buffer.from(got.body).equals(body)).toBe(true);
    expect(got?.etag).toBe(etag);
    const range = await store.get('chunks/000000000000', { range: { start: 5 * MiB + 1, end: 9 * MiB + 77 } });
    expect(range && Buffer.from(range.body).equals(body.subarray(5 * MiB + 1))).toBe(true);
    expect(await store.get('chunks/000000000000', { range: { start: 10 * MiB, end: 11 * MiB } })).toEqual({
      body: new Uint8Array(0),
      etag,
    });
    expect(await store.get('chunks/000000000000', { range: { start: 3, end: 3 } })).toEqual({ body: new Uint8Array(0), etag });
  });

  it('get and put honour an abort signal', async () => {
    const store = await GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint });
    const reason = new Error('stop');
    await expect(store.put('a', text('x'), { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    await expect(store.get('a', { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(await store.head('a')).toBeNull();
  });
});

describe('GcsObjectStore error mapping, through injected server faults', () => {
  let server: GcsJsonApiServer;
  let own: string;
  let stop: () => Promise<void>;
  beforeAll(async () => {
    const started = await startGcsServer();
    server = started.server;
    own = started.connection.endpoint;
    stop = started.stop;
  });
  afterAll(() => stop());

  const cases = [
    { status: 429, kind: 'throttled' },
    { status: 503, kind: 'transient' },
    { status: 500, kind: 'transient' },
    { status: 401, kind: 'auth' },
    { status: 403, kind: 'auth' },
    { status: 400, kind: 'fatal' },
  ] as const;

  for (const { status, kind } of cases) {
    it(`HTTP ${status} is '${kind}' on put (both upload types), get, head, list and delete — and is not retried by the client`, async () => {
      for (const resumableThreshold of [Number.MAX_SAFE_INTEGER, 0]) {
        const store = await GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint: own, resumableThreshold });
        await store.put('k', text('v'));
        const before = server.requests;
        server.faults.add({ status, times: 1 });
        await expectStoreError(store.put('k', text('w')), kind);
        expect(server.requests - before, 'one request: the client did not retry').toBe(1);
      }
      const store = await GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint: own });
      await store.put('k', text('v'));
      for (const call of [() => store.get('k'), () => store.head('k'), () => collect(store.list('')), () => store.delete(['k'])]) {
        server.faults.add({ status });
        const error = await expectStoreError(call(), kind);
        if (kind === 'auth') expect(error.message).toMatch(/gcloud auth application-default login|GOOGLE_APPLICATION_CREDENTIALS/);
      }
      expect(decode((await store.get('k'))?.body)).toBe('v');
    });
  }

  it('uploads below the resumable threshold in one multipart request, from it on through a resumable session', async () => {
    const store = await GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint: own, resumableThreshold: 1000 });
    const mark = server.log.length;
    await store.put('small', new Uint8Array(999));
    await store.put('large', new Uint8Array(1000));
    const uploads = server.log.slice(mark).filter((r) => r.path.startsWith('/upload/'));
    expect(uploads.map((r) => [r.method, r.query.uploadType, r.query.upload_id === undefined ? 'new' : 'session'])).toEqual([
      ['POST', 'multipart', 'new'],
      ['POST', 'resumable', 'new'],
      ['PUT', 'resumable', 'session'],
    ]);
  });

  it('objects up to md5MaxBytes go up with their MD5, which the server checks before storing; larger ones without', async () => {
    for (const resumableThreshold of [Number.MAX_SAFE_INTEGER, 0]) {
      const store = await GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint: own, md5MaxBytes: 10, resumableThreshold });
      const mark = server.log.length;
      await store.put('manifest.json', text('{"a":1}'));
      await store.put('chunks/000000000000', text('more than ten bytes'));
      const stored = server.log.slice(mark).filter((r) => r.verified !== undefined);
      expect(stored.map((r) => r.verified)).toEqual([['md5'], []]);
    }
  });

  it('a connection reset is transient', async () => {
    const store = await GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint: own });
    server.faults.add({ reset: true, match: 'uploadType=multipart' });
    await expectStoreError(store.put('k', text('v')), 'transient');
    await store.put('k', text('v'));
    server.faults.add({ reset: true, method: 'GET' });
    await expectStoreError(store.get('k'), 'transient');
  });

  it('a refused connection after open is transient (a restarting server), unlike at open', async () => {
    const temporary = await startGcsServer();
    const store = await GcsObjectStore.open({ bucket, prefix: 'p', endpoint: temporary.connection.endpoint });
    await temporary.stop();
    const error = await expectStoreError(store.get('k'), 'transient');
    expect(error.message).toContain(temporary.connection.endpoint);
  });

  it('a write whose response was lost has still landed: a retry of the create-only put is refused with precondition', async () => {
    const store = await GcsObjectStore.open({ bucket, prefix: freshPrefix(), endpoint: own });
    server.faults.add({ reset: true, when: 'after', match: 'uploadType=multipart' });
    await expectStoreError(store.put('manifest.json', text('mine'), { ifNoneMatch: true }), 'transient');
    await expectStoreError(store.put('manifest.json', text('mine'), { ifNoneMatch: true }), 'precondition');
    expect(decode((await store.get('manifest.json'))?.body)).toBe('mine');
  });
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** An endpoint on a port nothing listens on (taken, then released). */
async function closedPort(): Promise<string> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
