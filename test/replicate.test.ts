// The replication daemons on real ZFS (zfs-fuse): a series of streams — the full copy, then
// increments — through the directory store, with `replicate send` on the source pool and
// `replicate receive` on the target pool as separate processes, killed and restarted, cut over.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketpipe, errorLine, MiB, type Running, readJson, run, summaryOf, tempDir, waitFor } from './helpers.js';
import { type Pool, startZfs, type ZfsTestEnv } from './servers/zfs.js';
import { snapshotTree, writeSourceFiles } from './zfs-tree.js';

const fastStream = ['--chunk-size', '256KiB', '--manifest-interval', '100ms', '--poll-interval', '100ms'];
const fastReceive = ['--poll-interval', '100ms'];

describe('replicate: sender and receiver daemons on zfs-fuse', () => {
  let zfs: ZfsTestEnv;
  let dirs: Awaited<ReturnType<typeof tempDir>>;
  let a: Pool;
  let b: Pool;
  let suite = 0;

  beforeAll(async () => {
    dirs = await tempDir('replicate');
    zfs = await startZfs();
    a = await zfs.createPool('ra', 768 * MiB);
    b = await zfs.createPool('rb', 768 * MiB);
  });

  afterAll(async () => {
    await zfs?.stop();
    await dirs?.cleanup();
  });

  /** A fresh source dataset with files, a series URL and a target dataset name for one test. */
  async function setup(label: string) {
    suite++;
    const source = `${a.name}/${label}${suite}`;
    const target = `${b.name}/${label}${suite}`;
    await zfs.zfs('create', source);
    const sourceDir = await mountpointOf(source);
    await writeSourceFiles(sourceDir);
    return { source, sourceDir, target, series: join(dirs.path, `${label}${suite}`) };
  }

  const mountpointOf = async (dataset: string) => (await zfs.zfs('get', '-H', '-o', 'value', 'mountpoint', dataset)).trim();
  /** Snapshot names (after @) of `dataset`, oldest first. */
  const snapshotsOf = async (dataset: string) =>
    (await zfs.zfs('list', '-H', '-o', 'name', '-t', 'snapshot', '-s', 'createtxg', '-d', '1', dataset))
      .split('\n')
      .filter(Boolean)
      .map((name) => name.slice(name.indexOf('@') + 1));
  /** The target's files as they are on disk: zfs-fuse keeps stale pages of a mounted dataset after an incremental receive. */
  async function targetFiles(target: string) {
    await zfs.zfs('umount', target);
    await zfs.zfs('mount', target);
    return snapshotTree(await mountpointOf(target));
  }
  const seriesStreams = async (series: string) =>
    existsSync(join(series, 'series.json')) ? Number((await readJson(join(series, 'series.json'))).streams) : 0;
  const appliedSeq = async (series: string, receiver: string) => {
    const path = join(series, 'receivers', `${receiver}.json`);
    if (!existsSync(path)) return -1;
    const applied = (await readJson(path)).applied as { seq: number } | null;
    return applied?.seq ?? -1;
  };
  const streamTo = async (series: string, seq: number) =>
    ((await readJson(join(series, 'streams', String(seq).padStart(12, '0'), 'replication.json'))).to as { name: string }).name;

  function sender(series: string, source: string, extra: string[] = []): Running {
    return bucketpipe(['replicate', 'send', series, '--dataset', source, '--every', '1s', '--stale-after', '3s', ...fastStream, ...extra]);
  }
  function receiver(series: string, target: string, extra: string[] = []): Running {
    return bucketpipe(['replicate', 'receive', series, '--dataset', target, '--receiver-id', 'r1', ...fastReceive, ...extra]);
  }
  /** Waits until the receiver has applied a stream taken after now: the series has moved past what the source held. */
  async function waitForNewStreamApplied(series: string, timeoutMs = 60_000): Promise<number> {
    const streams = await seriesStreams(series);
    return waitFor(
      async () => {
        const applied = await appliedSeq(series, 'r1');
        return applied >= streams ? applied : undefined;
      },
      timeoutMs,
      `a stream after ${streams - 1} to be applied`,
    );
  }
  async function cutover(series: string) {
    const result = await run(['replicate', 'cutover', series, '--poll-interval', '100ms']);
    expect(result.code, result.stderr).toBe(0);
    return summaryOf(result.stderr);
  }

  it('replicates the full copy and increments, then cuts over: identical files, every snapshot in order', async () => {
    const { source, sourceDir, target, series } = await setup('inc');
    const send = sender(series, source);
    const recv = receiver(series, target);
    for (let round = 0; round < 3; round++) {
      await writeFile(join(sourceDir, `round-${round}.bin`), randomBytes(2 * MiB));
      await appendFile(join(sourceDir, 'sub/text.sql'), `-- round ${round}\n`);
      await waitForNewStreamApplied(series);
    }
    await writeFile(join(sourceDir, 'last.bin'), randomBytes(MiB));
    const summary = await cutover(series);
    const [sent, received] = await Promise.all([send.done, recv.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);

    const final = summary.final as { seq: number; snapshot: string };
    expect(final.seq).toBeGreaterThanOrEqual(4);
    expect(await targetFiles(target)).toEqual(await snapshotTree(sourceDir));
    const expected = [];
    for (let seq = 0; seq <= final.seq; seq++) expected.push(await streamTo(series, seq));
    expect(await snapshotsOf(target)).toEqual(expected);
    expect(expected.at(-1)).toBe(final.snapshot);
    expect(summaryOf(received.stderr)).toMatchObject({ command: 'replicate receive', final: { seq: final.seq } });
  });
});
