#!/usr/bin/env node
// The "plain aws-style" baseline of the S3 benchmark: the corpus cut into OBJECT_SIZE objects,
// uploaded with PutObject at CONCURRENCY while a reader GETs each object as soon as its PUT is
// done (the shape of a live send | receive, without bucketpipe's compression, hashing or
// manifest). Prints one JSON line: raw MB/s over the whole run, and the CPU this process used.
//
// usage: s3-baseline.mjs CORPUS ENDPOINT BUCKET PREFIX [CONCURRENCY=8] [OBJECT_SIZE_MIB=16]
// Credentials and region from the standard AWS environment variables.
import { openSync, readSync } from 'node:fs';
import { Agent } from 'node:http';
import { DeleteObjectsCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

const [corpus, endpoint, bucket, prefix, concurrencyText = '8', objectMiBText = '16'] = process.argv.slice(2);
if (!corpus || !endpoint || !bucket || !prefix) {
  process.stderr.write('usage: s3-baseline.mjs CORPUS ENDPOINT BUCKET PREFIX [CONCURRENCY] [OBJECT_SIZE_MIB]\n');
  process.exit(2);
}
const concurrency = Number(concurrencyText);
const objectSize = Number(objectMiBText) * 2 ** 20;

const client = new S3Client({
  endpoint,
  region: process.env.AWS_REGION ?? 'us-east-1',
  forcePathStyle: true,
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
  requestHandler: { httpAgent: new Agent({ keepAlive: true, maxSockets: 2 * concurrency }) },
});

const fd = openSync(corpus, 'r');
const keys = [];
let rawBytes = 0;
let nextRead = 0;
let uploaded = 0;
let downloaded = 0;
const waiting = new Set();
const wakeReaders = () => {
  for (const wake of waiting) wake();
  waiting.clear();
};
const cpuBefore = process.cpuUsage();
const started = performance.now();

/** One object's bytes, read from the corpus at its offset (null past the end). */
function readObject(index) {
  const body = Buffer.allocUnsafe(objectSize);
  const length = readSync(fd, body, 0, objectSize, index * objectSize);
  return length === 0 ? null : body.subarray(0, length);
}

const uploaders = Array.from({ length: concurrency }, async () => {
  for (;;) {
    const index = nextRead++;
    const body = readObject(index);
    if (!body) return;
    const key = `${prefix}/${String(index).padStart(12, '0')}`;
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    keys[index] = key;
    rawBytes += body.length;
    uploaded++;
    wakeReaders();
  }
});
let uploadsDone = false;
const allUploaded = Promise.all(uploaders).then(() => {
  uploadsDone = true;
  wakeReaders();
});

// GETs in index order, up to `concurrency` at a time, each once its PUT has completed.
let nextGet = 0;
const readers = Array.from({ length: concurrency }, async () => {
  for (;;) {
    while (keys[nextGet] === undefined) {
      if (uploadsDone && nextGet >= uploaded) return;
      await new Promise((resolve) => waiting.add(resolve));
    }
    const key = keys[nextGet++];
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const body = await object.Body.transformToByteArray();
    downloaded += body.length;
  }
});
await allUploaded;
await Promise.all(readers);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);

for (let i = 0; i < keys.length; i += 1000) {
  await client.send(
    new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }),
  );
}
client.destroy();
if (downloaded !== rawBytes) throw new Error(`downloaded ${downloaded} bytes of ${rawBytes}`);
process.stdout.write(
  `${JSON.stringify({ objects: keys.length, rawBytes, seconds, MBps: rawBytes / 1e6 / seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}\n`,
);
