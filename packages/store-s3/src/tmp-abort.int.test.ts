import { randomBytes, randomUUID } from 'node:crypto';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { inject, it } from 'vitest';
import { readS3Settings } from './s3-options.js';
import { S3ObjectStore } from './s3-store.js';

const server = inject('s3');
it('probe', async () => {
  process.env.AWS_ACCESS_KEY_ID = server.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = server.secretAccessKey;
  const bucket = `bp-tmp-${randomUUID().slice(0, 8)}`;
  const admin = new S3Client({ endpoint: server.endpoint, region: server.region, forcePathStyle: true, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } });
  await admin.send(new CreateBucketCommand({ Bucket: bucket }));
  for (const httpClient of ['node', 'undici'] as const) {
    const store = await S3ObjectStore.open({ bucket, prefix: 'p', settings: readS3Settings({ s3Endpoint: server.endpoint, s3HttpClient: httpClient }, {}) });
    const body = randomBytes(32 * 1024 * 1024);
    await store.put('big', body);
    for (const delay of [0, 2, 5, 10, 20, 40, 80]) {
      const controller = new AbortController();
      const reason = new Error('stop now');
      const t0 = performance.now();
      let abortedAt = 0;
      setTimeout(() => { abortedAt = performance.now() - t0; controller.abort(reason); }, delay);
      const outcome = await store.get('big', { signal: controller.signal }).then((r) => `RESOLVED ${r?.body.length}`, (e) => (e === reason ? 'rejected with reason' : `rejected other: ${e}`));
      console.log(httpClient, delay, outcome, `abort at ${abortedAt.toFixed(1)} ms, settled at ${(performance.now() - t0).toFixed(1)} ms`);
    }
    await store.close();
  }
  admin.destroy();
}, 120_000);
