// The replication daemons on real ZFS (zfs-fuse): a series of streams — the full copy, then
// increments — through the directory store, with `replicate send` on the source pool and
// `replicate receive` on the target pool as separate processes, killed and restarted, cut over.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
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

  /** The daemons a test started: stopped after it, and their last words shown when it failed. */
  const started: Running[] = [];
  afterEach(async () => {
    for (const daemon of started.splice(0)) {
      daemon.child.kill('SIGKILL');
      await daemon.done;
    }
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

  function daemon(args: string[]): Running {
    const running = bucketpipe(args);
    started.push(running);
    onTestFailed(() => {
      const lines = running.stderr().trim().split('\n');
      console.error(`${args.slice(0, 2).join(' ')} (pid ${running.child.pid}), last lines:\n${lines.slice(-8).join('\n')}`);
    });
    return running;
  }
  function sender(series: string, source: string, extra: string[] = []): Running {
    return daemon(['replicate', 'send', series, '--dataset', source, '--every', '1s', ...fastStream, ...extra]);
  }
  function receiver(series: string, target: string, extra: string[] = []): Running {
    return daemon(['replicate', 'receive', series, '--dataset', target, '--receiver-id', 'r1', ...fastReceive, ...extra]);
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
  /** The daemon's /metrics, at the address it printed. */
  async function scrape(daemon: Running): Promise<string> {
    const url = await waitFor(() => /metrics on (http:\/\/[^ ,]+\/metrics)/.exec(daemon.stderr())?.[1], 10_000, 'the metrics address');
    return (await fetch(url)).text();
  }
  const metricValue = (text: string, name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
    if (!line) throw new Error(`no ${name} in /metrics`);
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  async function cutover(series: string) {
    const result = await run(['replicate', 'cutover', series, '--poll-interval', '100ms']);
    expect(result.code, errorLine(result.stderr)).toBe(0);
    return summaryOf(result.stderr);
  }

  it('replicates the full copy and increments, then cuts over: identical files, every snapshot in order', async () => {
    const { source, sourceDir, target, series } = await setup('inc');
    const send = sender(series, source, ['--metrics-addr', '127.0.0.1:0']);
    const recv = receiver(series, target, ['--metrics-addr', '127.0.0.1:0']);
    for (let round = 0; round < 3; round++) {
      await writeFile(join(sourceDir, `round-${round}.bin`), randomBytes(2 * MiB));
      await appendFile(join(sourceDir, 'sub/text.sql'), `-- round ${round}\n`);
      await waitForNewStreamApplied(series);
    }
    const applied = await appliedSeq(series, 'r1');
    const receiverMetrics = await scrape(recv);
    expect(metricValue(receiverMetrics, 'bucketpipe_streams_applied_total')).toBeGreaterThanOrEqual(applied + 1);
    expect(metricValue(receiverMetrics, 'bucketpipe_series_stream')).toBeGreaterThanOrEqual(applied);
    const lag = metricValue(receiverMetrics, 'bucketpipe_replication_lag_seconds');
    expect(lag).toBeGreaterThanOrEqual(0);
    expect(lag).toBeLessThan(60);
    expect(metricValue(await scrape(send), 'bucketpipe_streams_sent_total')).toBeGreaterThanOrEqual(applied + 1);
    await writeFile(join(sourceDir, 'last.bin'), randomBytes(MiB));
    const summary = await cutover(series);
    const [sent, received] = await Promise.all([send.done, recv.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);

    const final = summary.final as { seq: number; snapshot: string };
    expect(final.seq).toBeGreaterThanOrEqual(3); // the full stream and at least three increments
    expect(await targetFiles(target)).toEqual(await snapshotTree(sourceDir));
    const expected = [];
    for (let seq = 0; seq <= final.seq; seq++) expected.push(await streamTo(series, seq));
    expect(await snapshotsOf(target)).toEqual(expected);
    expect(expected.at(-1)).toBe(final.snapshot);
    expect(summaryOf(received.stderr)).toMatchObject({ command: 'replicate receive', final: { seq: final.seq } });
    const record = await readJson(join(series, 'series.json'));
    expect(record).toMatchObject({
      streams: final.seq + 1,
      final: { seq: final.seq, snapshot: final.snapshot },
      sourceNewest: { name: final.snapshot },
    });
  });

  /** The manifest of stream `seq`, or undefined before it exists. */
  const manifestOf = async (series: string, seq: number) => {
    const path = join(series, 'streams', String(seq).padStart(12, '0'), 'manifest.json');
    return existsSync(path) ? await readJson(path) : undefined;
  };
  /** Waits until a stream from `seq` on is partly stored (at least `chunks` chunks, not complete); its number. */
  const midStream = (series: string, seq: number, chunks: number) =>
    waitFor(
      async () => {
        for (let n = seq; n < (await seriesStreams(series)); n++) {
          const m = await manifestOf(series, n);
          if (m && m.state === 'sending' && Number(m.watermark) >= chunks) return n;
        }
        return undefined;
      },
      60_000,
      `a stream from ${seq} on to be partly stored`,
    );
  /** Waits until the receiver daemon is partway through a stream from `seq` on (its cursor there); its number. */
  const midApply = (series: string, seq: number, chunks: number) =>
    waitFor(
      async () => {
        for (let n = seq; n < (await seriesStreams(series)); n++) {
          const path = join(series, 'streams', String(n).padStart(12, '0'), 'receivers', 'r1.json');
          if (!existsSync(path)) continue;
          const cursor = await readJson(path).catch(() => undefined);
          if (cursor && Number(cursor.position) >= chunks && cursor.state !== 'done') return n;
        }
        return undefined;
      },
      60_000,
      `the receiver to be partway through a stream from ${seq} on`,
    );
  async function expectSeriesOnTarget(series: string, target: string, sourceDir: string, finalSeq: number) {
    expect(await targetFiles(target)).toEqual(await snapshotTree(sourceDir));
    const expected = [];
    for (let seq = 0; seq <= finalSeq; seq++) expected.push(await streamTo(series, seq));
    expect(await snapshotsOf(target)).toEqual(expected);
  }

  it('survives SIGKILL of the sender daemon, of the receiver daemon, and of both at once, mid-increment', async () => {
    const { source, sourceDir, target, series } = await setup('kill');
    const slow = ['--rate', '4MB/s'];
    let send = sender(series, source, slow);
    let recv = receiver(series, target, slow);
    const restarts: string[] = [];
    for (const victim of ['sender', 'receiver', 'both'] as const) {
      await waitForNewStreamApplied(series);
      await writeFile(join(sourceDir, `${victim}.bin`), randomBytes(12 * MiB));
      const from = Math.max(0, (await seriesStreams(series)) - 1); // the new file travels in this stream or a later one
      const seq = victim === 'receiver' ? await midApply(series, from, 4) : await midStream(series, from, 4);
      if (victim !== 'receiver') {
        send.child.kill('SIGKILL');
        await send.done;
        send = sender(series, source, slow);
      }
      if (victim !== 'sender') {
        recv.child.kill('SIGKILL');
        await recv.done;
        recv = receiver(series, target, slow);
      }
      restarts.push(`${victim} killed in stream ${seq}`);
    }
    await waitForNewStreamApplied(series);
    const summary = await cutover(series);
    const [sent, received] = await Promise.all([send.done, recv.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    await expectSeriesOnTarget(series, target, sourceDir, (summary.final as { seq: number }).seq);
    expect(restarts).toHaveLength(3);
  });

  it('cuts over while the source is written at a steady rate: the target holds the final snapshot and every file written before it', async () => {
    const { source, sourceDir, target, series } = await setup('cut');
    const send = sender(series, source);
    const recv = receiver(series, target);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await writeFile(join(sourceDir, `steady-${i}.bin`), randomBytes(MiB / 4)); // about 2.5 MB/s
        await sleep(100);
      }
    })();
    await sleep(4000);
    writing = false; // the operator stops writes, then cuts over
    await writer;
    const summary = await cutover(series);
    const [sent, received] = await Promise.all([send.done, recv.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    const final = summary.final as { seq: number; snapshot: string };
    await expectSeriesOnTarget(series, target, sourceDir, final.seq);
    expect((await snapshotsOf(target)).at(-1)).toBe(final.snapshot);
    expect(summary.seconds as number).toBeGreaterThan(0);
  });

  it('refuses a target changed out of band without -F, nothing received; with -F rolls it back and applies', async () => {
    const { source, sourceDir, target, series } = await setup('oob');
    const send = sender(series, source);
    let recv = receiver(series, target);
    await waitForNewStreamApplied(series);
    recv.child.kill('SIGTERM');
    await recv.done;
    const before = await snapshotsOf(target);
    await writeFile(join(await mountpointOf(target), 'written-on-the-target'), 'out of band\n');
    await writeFile(join(sourceDir, 'more.bin'), randomBytes(MiB));
    const next = (await seriesStreams(series)) + 1;
    await waitFor(async () => ((await seriesStreams(series)) > next ? true : undefined), 30_000, 'more streams');

    const refused = await run(['replicate', 'receive', series, '--dataset', target, '--receiver-id', 'r1', ...fastReceive]);
    expect(refused.code).toBe(4);
    expect(errorLine(refused.stderr)).toMatch(/has been modified since most recent snapshot.*--recv-flags=-F.*\[BP_TARGET_MODIFIED\]/);
    expect(await snapshotsOf(target)).toEqual(before);

    recv = receiver(series, target, ['--recv-flags=-F']);
    await waitForNewStreamApplied(series);
    const summary = await cutover(series);
    const [sent, received] = await Promise.all([send.done, recv.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    await expectSeriesOnTarget(series, target, sourceDir, (summary.final as { seq: number }).seq);
  });

  it('refuses a target of another dataset: nothing received', async () => {
    const { source, target, series } = await setup('foreign');
    await zfs.zfs('create', target);
    await zfs.zfs('snapshot', `${target}@daily`);
    const send = sender(series, source);
    await waitFor(async () => ((await seriesStreams(series)) > 0 ? true : undefined), 30_000, 'the first stream');
    const refused = await run(['replicate', 'receive', series, '--dataset', target, '--receiver-id', 'r1', ...fastReceive]);
    expect(refused.code).toBe(4);
    expect(errorLine(refused.stderr)).toMatch(/holds none of the series' snapshots \(it has 1, newest @daily\).*\[BP_TARGET_FOREIGN\]/);
    expect(await snapshotsOf(target)).toEqual(['daily']);
    send.child.kill('SIGTERM');
    await send.done;
  });

  it('destroys source snapshots only once the receivers applied them, keeping --keep of its own; --delete-applied empties the applied streams', async () => {
    const { source, sourceDir, target, series } = await setup('prune');
    const send = sender(series, source, ['--keep', '2']);
    await waitFor(async () => ((await seriesStreams(series)) >= 5 ? true : undefined), 30_000, 'five streams');
    // No receiver registered yet: every snapshot of the series stays.
    const own = (names: string[]) => names.filter((n) => n.startsWith('bp-'));
    expect(own(await snapshotsOf(source)).length).toBeGreaterThanOrEqual(5);
    const recv = receiver(series, target, ['--delete-applied']);
    await writeFile(join(sourceDir, 'late.bin'), randomBytes(MiB));
    await waitForNewStreamApplied(series);
    const summary = await cutover(series);
    const [sent, received] = await Promise.all([send.done, recv.done]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    const final = summary.final as { seq: number; snapshot: string };
    // Every receiver holds the final snapshot: of bucketpipe's own, the two newest are kept, older ones destroyed.
    const left = own(await snapshotsOf(source));
    expect(left).toEqual([await streamTo(series, final.seq - 1), final.snapshot]);
    expect(await snapshotsOf(target)).toContain(final.snapshot);
    // --delete-applied: the only receiver applied every stream, so no chunk object is left; the records are.
    for (let seq = 0; seq <= final.seq; seq++) {
      const root = join(series, 'streams', String(seq).padStart(12, '0'));
      expect(existsSync(join(root, 'chunks')) ? await readdir(join(root, 'chunks')) : []).toEqual([]);
      expect((await manifestOf(series, seq))?.state).toBe('complete');
    }
    expect(summaryOf(received.stderr)).toMatchObject({ command: 'replicate receive' });
    expect(received.stderr).toMatch(/"event":"deleted"/);
  });
});
