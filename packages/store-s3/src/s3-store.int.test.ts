import { randomBytes, randomUUID } from 'node:crypto';
import diagnosticsChannel from 'node:diagnostics_channel';
import { createServer } from 'node:net';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { openStore } from '@bucketpipe/core';
import { describeStoreConformance, expectStoreError } from '@bucketpipe/store-testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { registerS3Store } from './index.js';
import { silenceSdkNodeVersionWarning } from './s3-client.js';
import { readS3Settings } from './s3-options.js';
import { S3ObjectStore, type S3StoreOptions } from './s3-store.js';

// The real server global-setup started (Ceph radosgw), a fresh bucket for this run, credentials
// through the standard chain (the environment), as users give them.
const server = inject('s3');
const bucket = `bp-s3-${randomUUID().slice(0, 8)}`;
const credentialVariables = {
  AWS_ACCESS_KEY_ID: server.accessKeyId,
  AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
  AWS_SESSION_TOKEN: undefined,
  AWS_PROFILE: undefined,
  AWS_REGION: undefined,
  AWS_ENDPOINT_URL: undefined,
  AWS_ENDPOINT_URL_S3: undefined,
  AWS_EC2_METADATA_DISABLED: 'true',
};
const saved: Record<string, string | undefined> = {};
silenceSdkNodeVersionWarning();
const admin = new S3Client({
  endpoint: server.endpoint,
  region: server.region,
  forcePathStyle: true,
  credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});

beforeAll(async () => {
  for (const [name, value] of Object.entries(credentialVariables)) {
    saved[name] = process.env[name];
    setEnv(name, value);
  }
  await admin.send(new CreateBucketCommand({ Bucket: bucket }));
});

afterAll(async () => {
  await emptyBucket(bucket);
  await admin.send(new DeleteBucketCommand({ Bucket: bucket }));
  admin.destroy();
  for (const [name, value] of Object.entries(saved)) setEnv(name, value);
});

function setEnv(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

async function emptyBucket(name: string): Promise<void> {
  for (;;) {
    const page = await admin.send(new ListObjectsV2Command({ Bucket: name }));
    const keys = (page.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
    if (keys.length === 0) return;
    await admin.send(new DeleteObjectsCommand({ Bucket: name, Delete: { Objects: keys, Quiet: true } }));
  }
}

let serial = 0;
const bytes = (s: string) => new TextEncoder().encode(s);

async function timed<T>(work: Promise<T>): Promise<{ result: T; ms: number }> {
  const started = performance.now();
  const result = await work;
  return { result, ms: performance.now() - started };
}

// Everything runs once per HTTP client (s3-client.ts: the SDK's NodeHttpHandler, or undici).
for (const httpClient of ['node', 'undici'] as const) {
  const settings = () => readS3Settings({ s3Endpoint: server.endpoint, s3HttpClient: httpClient }, {});
  /** A store on a fresh, empty prefix of this run's bucket. */
  const freshStore = (options: Partial<S3StoreOptions> = {}) =>
    S3ObjectStore.open({ bucket, prefix: `run/${++serial}`, settings: settings(), ...options });

  describeStoreConformance(`S3ObjectStore (Ceph radosgw, ${httpClient} HTTP client)`, () => freshStore());

  describe(`S3ObjectStore on radosgw (${httpClient} HTTP client)`, () => {
    it('finds that radosgw honours If-None-Match and If-Match with the unquoted ETag, and removes its probe object', async () => {
      const store = await freshStore();
      try {
        expect(await store.conditionalSupport()).toEqual({ createOnly: true, ifMatchForm: 'unquoted' });
        const listed = await admin.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${store.prefix}/` }));
        expect(listed.Contents ?? [], 'no probe object left').toEqual([]);
        // The store hands out ETags as the server sends them (quoted) and still gets compare-and-swap right.
        const { etag } = await store.put('manifest.json', bytes('v1'), { ifNoneMatch: true });
        expect(etag).toMatch(/^".+"$/);
        await store.put('manifest.json', bytes('v2'), { ifMatch: etag });
        await expectStoreError(store.put('manifest.json', bytes('v3'), { ifMatch: etag }), 'precondition');
      } finally {
        await store.close();
      }
    });

    it('hides objects of its own (a probe left by a crash) from listings', async () => {
      const store = await freshStore();
      try {
        await admin.send(new PutObjectCommand({ Bucket: bucket, Key: `${store.prefix}/.bucketpipe-probe/left-over`, Body: 'x' }));
        await store.put('manifest.json', bytes('m'));
        const keys: string[] = [];
        for await (const { key } of store.list('')) keys.push(key);
        expect(keys).toEqual(['manifest.json']);
      } finally {
        await store.close();
      }
    });

    it('uploads an object above the multipart threshold in parts; it reads back byte for byte, also in ranges', async () => {
      const MiB = 1024 * 1024;
      const store = await freshStore({ multipartThreshold: 8 * MiB, partSize: 5 * MiB });
      try {
        const body = randomBytes(23 * MiB + 4321);
        const { etag } = await store.put('chunks/000000000000', body);
        // A multipart ETag is "<md5 of the part md5s>-<parts>": proof that the multipart path ran.
        expect(etag).toMatch(/-5"$/);
        expect(await store.head('chunks/000000000000')).toEqual({ size: body.length, etag });
        const got = await store.get('chunks/000000000000');
        expect(got && Buffer.from(got.body).equals(body), 'identical bytes').toBe(true);
        expect(got?.etag).toBe(etag);
        // Ranges across a part boundary (parts are 5 MiB) and at the very end.
        for (const [start, end] of [
          [5 * MiB - 10, 5 * MiB + 10],
          [7 * MiB + 1, 17 * MiB + 3],
          [body.length - 5, body.length + 100],
        ] as const) {
          const range = await store.get('chunks/000000000000', { range: { start, end } });
          expect(range && Buffer.from(range.body).equals(body.subarray(start, end)), `range ${start}-${end}`).toBe(true);
        }
        // An empty range at the end is an empty body, not an error.
        expect((await store.get('chunks/000000000000', { range: { start: body.length, end: body.length + 1 } }))?.body.length).toBe(0);
      } finally {
        await store.close();
      }
    });

    it('wrong credentials fail at open with kind auth within seconds, naming the bucket and never the secret', async () => {
      const cases = [
        { AWS_ACCESS_KEY_ID: 'BPNOSUCHKEY000000000', AWS_SECRET_ACCESS_KEY: server.secretAccessKey, code: 'InvalidAccessKeyId' },
        { AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: 'wrong-secret-wrong-secret-wrong', code: 'SignatureDoesNotMatch' },
      ];
      for (const { code, ...variables } of cases) {
        for (const [name, value] of Object.entries(variables)) setEnv(name, value);
        try {
          const { result: error, ms } = await timed(expectStoreError(freshStore(), 'auth'));
          expect(ms).toBeLessThan(5_000);
          expect(error.message).toContain(code);
          expect(error.message).toContain(`s3://${bucket}`);
          expect(error.message).toContain('AWS_ACCESS_KEY_ID');
          expect(error.message).not.toContain(variables.AWS_SECRET_ACCESS_KEY);
          expect(error.message).not.toContain('\n');
        } finally {
          setEnv('AWS_ACCESS_KEY_ID', server.accessKeyId);
          setEnv('AWS_SECRET_ACCESS_KEY', server.secretAccessKey);
        }
      }
    });

    it('a missing bucket fails at open with kind not-found within seconds, naming the bucket and the endpoint', async () => {
      const { result: error, ms } = await timed(
        expectStoreError(
          S3ObjectStore.open({ bucket: `bp-missing-${randomUUID().slice(0, 8)}`, prefix: 'x', settings: settings() }),
          'not-found',
        ),
      );
      expect(ms).toBeLessThan(5_000);
      expect(error.message).toMatch(/bucket "bp-missing-[0-9a-f]{8}" does not exist/);
      expect(error.message).toContain(server.endpoint);
    });

    it('a wrong endpoint (nothing listening) fails at open within seconds, naming the endpoint', async () => {
      const endpoint = `http://127.0.0.1:${await closedPort()}`;
      const { result: error, ms } = await timed(
        expectStoreError(
          S3ObjectStore.open({ bucket, prefix: 'x', settings: readS3Settings({ s3Endpoint: endpoint, s3HttpClient: httpClient }, {}) }),
          'fatal',
        ),
      );
      expect(ms).toBeLessThan(5_000);
      expect(error.message).toContain(endpoint);
      expect(error.message).toContain('ECONNREFUSED');
      expect(error.message).toContain('--s3-endpoint');
    });

    it('registerS3Store opens s3:// URLs with the CLI’s option names', async () => {
      registerS3Store();
      const store = await openStore(`s3://${bucket}/via-url/${randomUUID().slice(0, 8)}`, {
        s3Endpoint: server.endpoint,
        concurrency: '8',
        s3HttpClient: httpClient,
      });
      try {
        expect(store.description).toContain(`s3://${bucket}/via-url/`);
        expect(store.description).toContain(server.endpoint);
        await store.put('manifest.json', bytes('m'), { ifNoneMatch: true });
        expect(Buffer.from((await store.get('manifest.json'))?.body ?? []).toString()).toBe('m');
      } finally {
        await store.close();
      }
    });

    it('an aborted get rejects with the signal’s reason', async () => {
      const store = await freshStore();
      try {
        await store.put('k', bytes('x'));
        const controller = new AbortController();
        const reason = new Error('stop');
        controller.abort(reason);
        await expect(store.get('k', { signal: controller.signal })).rejects.toBe(reason);
      } finally {
        await store.close();
      }
    });

    it('an abort in the middle of a large get rejects with the signal’s reason, and the store keeps working', async () => {
      const store = await freshStore();
      try {
        const body = randomBytes(32 * 1024 * 1024);
        await store.put('big', body);
        // Aborted 5 ms in (usually before the headers), and just after the headers (while the body
        // is on its way: the undici handler once let such a get read on and succeed).
        for (const when of ['5 ms in', 'after the headers'] as const) {
          const controller = new AbortController();
          const reason = new Error('stop now');
          const abort = () => controller.abort(reason);
          const unsubscribe = when === '5 ms in' ? noop : afterNextGetHeaders(httpClient, abort);
          if (when === '5 ms in') setTimeout(abort, 5);
          try {
            // A short outcome: vitest formatting a failure on a resolved 32 MiB body runs out of memory.
            const outcome = await store.get('big', { signal: controller.signal }).then(
              (got) => `resolved with ${got?.body.length} bytes (aborted: ${controller.signal.aborted})`,
              (error: unknown) => error,
            );
            expect(outcome, `abort ${when}`).toBe(reason);
          } finally {
            unsubscribe();
          }
        }
        const again = await store.get('big');
        expect(again && Buffer.from(again.body).equals(body)).toBe(true);
      } finally {
        await store.close();
      }
    });

    it('many requests in a row on a pool of one connection do not stall (every answer body is consumed)', async () => {
      const store = await S3ObjectStore.open({
        bucket,
        prefix: `run/${++serial}`,
        settings: { ...settings(), concurrency: 1 },
      });
      try {
        // concurrency 1 → 20 sockets; 60 rounds of put/head/get/list/absent get/delete use each many times over.
        for (let i = 0; i < 60; i++) {
          const key = `k${i % 3}`;
          await store.put(key, bytes(`v${i}`));
          expect((await store.head(key))?.size).toBe(`v${i}`.length);
          expect(Buffer.from((await store.get(key))?.body ?? []).toString()).toBe(`v${i}`);
          expect(await store.get('absent')).toBeNull();
          for await (const _ of store.list('')) break;
          if (i % 10 === 9) await store.delete([key]);
        }
      } finally {
        await store.close();
      }
    }, 60_000);
  });
}

const noop = () => undefined;

/**
 * Calls `then` once, a moment after the headers of the next GET answer arrive (seen on the HTTP
 * client's diagnostics channel), while its body is still on its way. Returns the unsubscription.
 */
function afterNextGetHeaders(httpClient: 'node' | 'undici', then: () => void): () => void {
  const name = httpClient === 'node' ? 'http.client.response.finish' : 'undici:request:headers';
  const onMessage = (message: unknown) => {
    if ((message as { request?: { method?: string } }).request?.method !== 'GET') return;
    unsubscribe();
    setImmediate(then);
  };
  const unsubscribe = () => {
    if (diagnosticsChannel.channel(name).hasSubscribers) diagnosticsChannel.unsubscribe(name, onMessage);
  };
  diagnosticsChannel.subscribe(name, onMessage);
  return unsubscribe;
}

/** A port on 127.0.0.1 that nothing listens on (bound once, then released). */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}
