// The replication daemons across clouds, as in the migration story: the sender daemon on the source
// pool writes the series to S3 (Ceph radosgw), a relay follows it to GCS (the GCS JSON API test
// server), and the receiver daemon applies it from GCS into the target pool (zfs-fuse); then the
// cut-over, asked at the source's URL, ends all three.
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { bucketpipe, createS3Bucket, errorLine, MiB, type Running, run, s3Env, summaryOf, waitFor } from './helpers.js';
import { GCS_TEST_BUCKET } from './servers/gcs.js';
import { type Pool, startZfs, type ZfsTestEnv } from './servers/zfs.js';
import { snapshotTree, writeSourceFiles } from './zfs-tree.js';

const s3 = inject('s3');
const gcs = inject('gcs');
const env = s3Env(s3);
const s3Args = ['--s3-endpoint', s3.endpoint, '--s3-path-style'];
const gcsArgs = ['--gcs-endpoint', gcs.endpoint];
const bucket = `replicate-${randomUUID().slice(0, 8)}`;

describe('replicate through S3 with a relay to GCS, on zfs-fuse', () => {
  let zfs: ZfsTestEnv;
  let a: Pool;
  let b: Pool;
  const started: Running[] = [];

  beforeAll(async () => {
    await createS3Bucket(s3, bucket);
    zfs = await startZfs();
    a = await zfs.createPool('ca');
    b = await zfs.createPool('cb');
  });

  afterAll(async () => {
    for (const daemon of started) daemon.child.kill('SIGKILL');
    await zfs?.stop();
  });

  const daemon = (args: string[]) => {
    const running = bucketpipe(args, { env });
    started.push(running);
    return running;
  };
  const mountpointOf = async (dataset: string) => (await zfs.zfs('get', '-H', '-o', 'value', 'mountpoint', dataset)).trim();

  it('sends to S3, relays to GCS and applies from GCS, live; the cut-over at the source ends all three, files identical', async () => {
    const source = `${a.name}/pg`;
    const target = `${b.name}/pg`;
    await zfs.zfs('create', source);
    const sourceDir = await mountpointOf(source);
    await writeSourceFiles(sourceDir);
    const s3Url = `s3://${bucket}/pgdata`;
    const gsUrl = `gs://${GCS_TEST_BUCKET}/pgdata-${randomUUID().slice(0, 8)}`;
    const fast = ['--poll-interval', '200ms'];
    const send = daemon([
      'replicate',
      'send',
      s3Url,
      '--dataset',
      source,
      '--every',
      '1s',
      '--chunk-size',
      '256KiB',
      '--manifest-interval',
      '200ms',
      ...fast,
      ...s3Args,
    ]);
    const relay = daemon(['relay', s3Url, gsUrl, ...fast, ...s3Args, ...gcsArgs]);
    const recv = daemon(['replicate', 'receive', gsUrl, '--dataset', target, '--receiver-id', 'gcp', ...fast, ...gcsArgs]);

    // Files written while it runs arrive through both buckets.
    for (let round = 0; round < 2; round++) {
      await writeFile(join(sourceDir, `round-${round}.bin`), randomBytes(2 * MiB));
      await waitFor(
        async () => {
          const shown = await run(['inspect', gsUrl, '--json', ...gcsArgs], { env });
          const receivers = (JSON.parse(shown.stdout || '{}').receivers ?? []) as Array<{ applied?: { seq: number } | null }>;
          return (receivers[0]?.applied?.seq ?? -1) >= round + 1 ? true : undefined;
        },
        90_000,
        `stream ${round + 1} applied from GCS`,
      );
    }
    const cut = await run(['replicate', 'cutover', s3Url, '--poll-interval', '200ms', ...s3Args], { env });
    expect(cut.code, errorLine(cut.stderr)).toBe(0);
    const final = summaryOf(cut.stderr).final as { seq: number; snapshot: string };
    // The receiver at GCS was seen through its record, mirrored back to S3 by the relay.
    expect(summaryOf(cut.stderr).receivers).toEqual([expect.objectContaining({ receiverId: 'gcp', dataset: target })]);
    const [sent, relayed, received] = await Promise.all([send.done, relay.done, recv.done]);
    expect(sent.code, errorLine(sent.stderr)).toBe(0);
    expect(relayed.code, errorLine(relayed.stderr)).toBe(0);
    expect(received.code, errorLine(received.stderr)).toBe(0);
    expect(summaryOf(received.stderr)).toMatchObject({ final: { seq: final.seq, snapshot: final.snapshot } });

    await zfs.zfs('umount', target);
    await zfs.zfs('mount', target);
    expect(await snapshotTree(await mountpointOf(target))).toEqual(await snapshotTree(sourceDir));
    const snapshots = (await zfs.zfs('list', '-H', '-o', 'name', '-t', 'snapshot', '-s', 'createtxg', '-d', '1', target))
      .trim()
      .split('\n');
    expect(snapshots).toHaveLength(final.seq + 1);
    expect(snapshots.at(-1)).toBe(`${target}@${final.snapshot}`);
  });
});
