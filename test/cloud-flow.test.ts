import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import {
  bucketpipe,
  createS3Bucket,
  fixtures,
  MiB,
  mixedInputSuite,
  outputFile,
  type Running,
  run,
  s3Env,
  sha256File,
  streamDigestOfFile,
  summaryOf,
  waitFor,
} from './helpers.js';
import { GCS_TEST_BUCKET } from './servers/gcs.js';

// The user's flow: a sender on an AWS VM writes to S3 (here Ceph radosgw), a relay copies the live
// stream to Google Cloud Storage (here the GCS JSON API test server), a receiver on a GCP VM follows
// it there. Every part is a real CLI process; the servers run on 127.0.0.1.
const s3 = inject('s3');
const gcs = inject('gcs');
const bucket = `flow-${randomUUID().slice(0, 8)}`;
const s3Args = ['--s3-endpoint', s3.endpoint, '--s3-path-style'];
const gcsArgs = ['--gcs-endpoint', gcs.endpoint];
const env = s3Env(s3);
const CHUNK = 4 * MiB;
const sendArgs = ['--chunk-size', '4MiB', '--manifest-interval', '200ms', '-q', ...s3Args];
const followArgs = ['--poll-interval', '200ms', '-q'];

describe('S3 → relay → GCS → receiver, all running at once (real CLI processes, real servers)', () => {
  const suite = mixedInputSuite('cloud', 256 * MiB, 7);
  let inputDigest: string;

  beforeAll(async () => {
    await createS3Bucket(s3, bucket);
    inputDigest = await streamDigestOfFile(suite.input, CHUNK);
  });

  function urls(name: string) {
    return { s3Url: `s3://${bucket}/${name}`, gsUrl: `gs://${GCS_TEST_BUCKET}/${name}` };
  }

  function startSender(s3Url: string, source: string[] = ['cat', suite.input]): Running {
    return bucketpipe(['send', s3Url, ...sendArgs, '--', ...source], { env });
  }

  function startRelay(s3Url: string, gsUrl: string): Running {
    return bucketpipe(['relay', s3Url, gsUrl, ...followArgs, ...s3Args, ...gcsArgs], { env });
  }

  async function startReceiver(gsUrl: string, name: string) {
    const path = join(suite.dir, name);
    const out = await outputFile(path);
    const receiver = bucketpipe(['receive', gsUrl, ...followArgs, ...gcsArgs], { env, stdoutFile: out.fd });
    return { path, done: receiver.done.finally(() => out.close()) };
  }

  /** The destination's manifest watermark, as `inspect --json` reports it (0 while there is none). */
  async function publishedWatermark(gsUrl: string): Promise<number> {
    const inspected = await run(['inspect', gsUrl, '--json', ...gcsArgs], { env });
    if (inspected.code !== 0) return 0;
    return (JSON.parse(inspected.stdout) as { manifest: { watermark: number } }).manifest.watermark;
  }

  async function expectDelivered(receiver: { path: string; done: Promise<{ code: number | null; stderr: string }> }) {
    const received = await receiver.done;
    expect(received.code, received.stderr).toBe(0);
    expect(summaryOf(received.stderr)).toMatchObject({ command: 'receive', rawBytes: 256 * MiB, digest: inputDigest });
    expect(await sha256File(receiver.path)).toBe(suite.sha256);
  }

  it('moves 256 MiB byte-identical with sender, relay and receiver started together', async () => {
    const { s3Url, gsUrl } = urls('together');
    const receiver = await startReceiver(gsUrl, 'together.out');
    const relay = startRelay(s3Url, gsUrl);
    const sender = startSender(s3Url);
    const sent = await sender.done;
    expect(sent.code, sent.stderr).toBe(0);
    expect(summaryOf(sent.stderr)).toMatchObject({ command: 'send', state: 'complete', chunks: 64, digest: inputDigest });
    const relayed = await relay.done;
    expect(relayed.code, relayed.stderr).toBe(0);
    expect(summaryOf(relayed.stderr)).toMatchObject({ command: 'relay', state: 'complete', chunks: 64, chunksCopied: 64 });
    await expectDelivered(receiver);
  });

  it('works with the relay started late, after the sender has stored part of the stream', async () => {
    const { s3Url, gsUrl } = urls('late-relay');
    const receiver = await startReceiver(gsUrl, 'late-relay.out');
    // A paced source, so that "late" means mid-stream rather than after the end.
    const sender = startSender(s3Url, [process.execPath, join(fixtures, 'paced-cat.mjs'), suite.input, String(48 * MiB)]);
    await waitFor(
      async () => {
        const inspected = await run(['inspect', s3Url, '--json', ...s3Args], { env });
        if (inspected.code !== 0) return undefined;
        return (JSON.parse(inspected.stdout) as { manifest: { watermark: number } }).manifest.watermark >= 16 ? true : undefined;
      },
      60_000,
      'the sender to store 16 chunks',
    );
    const relay = startRelay(s3Url, gsUrl);
    const [sent, relayed] = await Promise.all([sender.done, relay.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(relayed.code, relayed.stderr).toBe(0);
    await expectDelivered(receiver);
  });

  it('resumes a relay killed midway (SIGKILL) without copying from the start again', async () => {
    const { s3Url, gsUrl } = urls('killed-relay');
    const receiver = await startReceiver(gsUrl, 'killed-relay.out');
    const sender = startSender(s3Url);
    const first = startRelay(s3Url, gsUrl);
    const reached = await waitFor(
      async () => {
        const watermark = await publishedWatermark(gsUrl);
        return watermark >= 12 ? watermark : undefined;
      },
      60_000,
      'the relay to publish 12 chunks',
    );
    first.child.kill('SIGKILL');
    await first.done;
    const second = startRelay(s3Url, gsUrl);
    const [sent, relayed] = await Promise.all([sender.done, second.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(relayed.code, relayed.stderr).toBe(0);
    const summary = summaryOf(relayed.stderr) as { chunks: number; chunksCopied: number };
    expect(summary.chunks).toBe(64);
    expect(summary.chunksCopied).toBeLessThanOrEqual(64 - reached);
    await expectDelivered(receiver);
  });
});
