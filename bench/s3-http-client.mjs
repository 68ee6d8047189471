#!/usr/bin/env node
// The S3 store's HTTP client, measured (packages/store-s3/README.md, "HTTP client"): OBJECTS
// objects of OBJECT_MIB through S3ObjectStore.put at CONCURRENCY, then all of them back through
// S3ObjectStore.get at CONCURRENCY, with the store's own clients (SigV4 with the body's SHA-256
// over plain http, checksums WHEN_REQUIRED) on the given HTTP client. Prints one JSON line: MB/s
// and this process's CPU (user + system) per GB for each phase.
//
// usage: s3-http-client.mjs ENDPOINT BUCKET node|undici [OBJECTS=48] [CONCURRENCY=8] [OBJECT_MIB=16]
// Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; the bucket must exist. Run it with
// turbo run build done (it imports packages/store-s3/dist).
import { randomBytes, randomUUID } from 'node:crypto';
import { readS3Settings, S3ObjectStore } from '../packages/store-s3/dist/index.js';

const [endpoint, bucket, httpClient, objectsText = '48', concurrencyText = '8', objectMiBText = '16'] = process.argv.slice(2);
if (!endpoint || !bucket || !httpClient) {
  process.stderr.write('usage: s3-http-client.mjs ENDPOINT BUCKET node|undici [OBJECTS] [CONCURRENCY] [OBJECT_MIB]\n');
  process.exit(2);
}
const objects = Number(objectsText);
const concurrency = Number(concurrencyText);
const size = Number(objectMiBText) * 2 ** 20;
const settings = readS3Settings({ s3Endpoint: endpoint, s3HttpClient: httpClient, concurrency: String(concurrency) }, {});
const store = await S3ObjectStore.open({ bucket, prefix: `http-bench/${randomUUID().slice(0, 8)}`, settings, region: 'us-east-1' });
// One body per worker, different bytes each (radosgw does not deduplicate, but be fair anyway).
const bodies = Array.from({ length: concurrency }, () => randomBytes(size));
const keys = Array.from({ length: objects }, (_, i) => `chunks/${String(i).padStart(12, '0')}`);

async function phase(work) {
  let next = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (let i = next++; i < objects; i = next++) await work(i, worker);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const gb = (objects * size) / 1e9;
  return {
    MBps: (objects * size) / 1e6 / seconds,
    cpuSecondsPerGB: (used.user + used.system) / 1e6 / gb,
    userPerGB: used.user / 1e6 / gb,
    systemPerGB: used.system / 1e6 / gb,
    seconds,
  };
}

// Warm-up: open connections and JIT with a few small requests, not measured.
await Promise.all(Array.from({ length: concurrency }, (_, i) => store.put(`warm/${i}`, randomBytes(65536))));
const put = await phase((i, worker) => store.put(keys[i], bodies[worker]));
let read = 0;
const get = await phase(async (i) => {
  const object = await store.get(keys[i]);
  read += object?.body.length ?? 0;
});
if (read !== objects * size) throw new Error(`read ${read} bytes of ${objects * size}`);
await store.delete([...keys, ...Array.from({ length: concurrency }, (_, i) => `warm/${i}`)]);
await store.close();
process.stdout.write(`${JSON.stringify({ httpClient, objects, concurrency, objectMiB: size / 2 ** 20, put, get })}\n`);
