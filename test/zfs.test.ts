// Real ZFS at both ends: `zfs send` into `bucketpipe send`, `bucketpipe receive` into `zfs recv`,
// through the directory store, with Debian's zfs-fuse daemon started here (test/servers/zfs.ts).
// Needs root, /dev/fuse and the zfs-fuse package (.ci/run installs it); no Ceph or GCS server.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketpipe, cliPath, errorLine, fixtures, MiB, readJson, run, summaryOf, tempDir, waitFor } from './helpers.js';
import { type Pool, startZfs, type ZfsTestEnv } from './servers/zfs.js';
import { type Entry, snapshotTree, writeSourceFiles } from './zfs-tree.js';

const execFileText = async (file: string, args: string[]) => (await promisify(execFile)(file, args)).stdout;
const execFileAsync = promisify(execFile);
const fastReceive = ['--poll-interval', '100ms'];
const fastSend = ['--chunk-size', '256KiB', '--manifest-interval', '100ms'];

describe('zfs send → bucketpipe → zfs recv, with zfs-fuse', () => {
  let zfs: ZfsTestEnv;
  let streams: Awaited<ReturnType<typeof tempDir>>;
  let a: Pool;
  let b: Pool;
  /** The source dataset and where it is mounted. */
  let source: string;
  let sourceDir: string;
  /** The files of @s1, and the size of its full send stream. */
  let filesAtS1: Record<string, Entry>;
  let fullStreamBytes: number;

  beforeAll(async () => {
    streams = await tempDir('zfs-streams');
    zfs = await startZfs();
    a = await zfs.createPool('a');
    b = await zfs.createPool('b');
    source = `${a.name}/ds`;
    await zfs.zfs('create', source);
    sourceDir = (await zfs.zfs('get', '-H', '-o', 'value', 'mountpoint', source)).trim();
    expect(sourceDir).toBe(join(a.mountpoint, 'ds'));
    await writeSourceFiles(sourceDir);
    await zfs.zfs('snapshot', `${source}@s1`);
    filesAtS1 = await snapshotTree(sourceDir);
    expect(Object.keys(filesAtS1)).toHaveLength(9);
    fullStreamBytes = Number(await execFileText('sh', ['-c', `"${zfs.zfsPath}" send "${source}@s1" | wc -c`]));
  });

  afterAll(async () => {
    await zfs?.stop(); // undefined when startZfs failed
    await streams?.cleanup();
  });

  const mountpointOf = async (dataset: string) => (await zfs.zfs('get', '-H', '-o', 'value', 'mountpoint', dataset)).trim();
  /**
   * Checks that `dataset` is not there once the daemon is done: zfs-fuse finishes a failed receive
   * after its client is gone, and listing while it does would make its cleanup fail (waitUntilIdle).
   * `idle` is the daemon's requestDescriptors() taken before the test started anything.
   */
  async function expectNoDataset(dataset: string, idle: number): Promise<void> {
    await zfs.waitUntilIdle(idle);
    expect(await zfs.list(dataset)).toEqual([]);
  }

  it('moves a full stream: the received dataset has the same files, snapshot included', async () => {
    const stream = join(streams.path, 'full');
    const target = `${b.name}/ds`;
    const receiver = bucketpipe(['receive', stream, ...fastReceive, '--', zfs.zfsPath, 'recv', target]);
    const sent = await run(['send', stream, ...fastSend, '--', zfs.zfsPath, 'send', `${source}@s1`]);
    expect(sent.code, sent.stderr).toBe(0);
    const received = await receiver.done;
    expect(received.code, received.stderr).toBe(0);

    const sendSummary = summaryOf(sent.stderr);
    expect(sendSummary).toMatchObject({ command: 'send', state: 'complete' });
    expect(summaryOf(received.stderr)).toMatchObject({ command: 'receive', rawBytes: sendSummary.rawBytes, digest: sendSummary.digest });

    expect(await zfs.list(target)).toEqual([target, `${target}@s1`]);
    const targetDir = await mountpointOf(target);
    expect(targetDir).toBe(join(b.mountpoint, 'ds'));
    expect(sendSummary.rawBytes).toBe(fullStreamBytes);
    expect(await snapshotTree(targetDir)).toEqual(filesAtS1);
  });

  it('moves a full stream encrypted (--encryption-key-file): files identical with the key; without it, no dataset', async () => {
    const idle = await zfs.requestDescriptors();
    const stream = join(streams.path, 'encrypted');
    const keyFile = join(streams.path, 'zfs.key');
    await writeFile(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
    const key = ['--encryption-key-file', keyFile];
    const sent = await run(['send', stream, ...fastSend, ...key, '--', zfs.zfsPath, 'send', `${source}@s1`]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(summaryOf(sent.stderr)).toMatchObject({ rawBytes: fullStreamBytes, encrypted: true });

    const keyless = `${b.name}/keyless`;
    const refused = await run(['receive', stream, ...fastReceive, '--', zfs.zfsPath, 'recv', keyless]);
    expect(refused.code, refused.stderr).toBe(2);
    expect(errorLine(refused.stderr)).toMatch(/is encrypted .*\[BP_KEY_MISSING\]$/);
    await expectNoDataset(keyless, idle);

    const target = `${b.name}/enc`;
    const received = await run(['receive', stream, ...fastReceive, ...key, '--', zfs.zfsPath, 'recv', target]);
    expect(received.code, received.stderr).toBe(0);
    expect(await zfs.list(target)).toEqual([target, `${target}@s1`]);
    expect(await snapshotTree(await mountpointOf(target))).toEqual(filesAtS1);
  });

  it('moves an incremental stream on top; a target changed since its snapshot makes zfs recv (and so receive) fail unless -F', async () => {
    // Change the source: modify, append, delete, rename, add.
    await writeFile(join(sourceDir, 'random.bin'), randomBytes(MiB), { flag: 'r+' }); // overwrite the first MiB
    await writeFile(join(sourceDir, 'sub/text.sql'), 'appended line\n', { flag: 'a' });
    await rm(join(sourceDir, 'sub/deeper/zeros.bin'));
    await rename(join(sourceDir, 'private.key'), join(sourceDir, 'sub/private.key'));
    await mkdir(join(sourceDir, 'new-dir'));
    await writeFile(join(sourceDir, 'new-dir/new.bin'), randomBytes(512 * 1024));
    await zfs.zfs('snapshot', `${source}@s2`);

    const target = `${b.name}/ds`;
    const targetDir = await mountpointOf(target);
    // A local change on the target since @s1.
    await writeFile(join(targetDir, 'local-change'), 'written on the target\n');
    const incremental = [zfs.zfsPath, 'send', '-i', 's1', `${source}@s2`];

    const refusedStream = join(streams.path, 'incremental-refused');
    const refusedSent = await run(['send', refusedStream, ...fastSend, '--', ...incremental]);
    expect(refusedSent.code, refusedSent.stderr).toBe(0);
    const refused = await run(['receive', refusedStream, ...fastReceive, '--', zfs.zfsPath, 'recv', target]);
    expect(refused.code, refused.stderr).toBe(7);
    expect(refused.stderr).toContain('has been modified');
    expect(errorLine(refused.stderr)).toContain('[BP_SINK_FAILED]');
    expect(await zfs.list(target)).toEqual([target, `${target}@s1`]);

    const stream = join(streams.path, 'incremental');
    const receiver = bucketpipe(['receive', stream, ...fastReceive, '--', zfs.zfsPath, 'recv', '-F', target]);
    const sent = await run(['send', stream, ...fastSend, '--', ...incremental]);
    expect(sent.code, sent.stderr).toBe(0);
    const received = await receiver.done;
    expect(received.code, received.stderr).toBe(0);

    expect(await zfs.list(target)).toEqual([target, `${target}@s1`, `${target}@s2`]);
    // zfs-fuse does not invalidate the kernel's page and attribute caches of a mounted dataset that
    // an incremental receive changed: without a remount, files read before show their old bytes and size.
    await zfs.zfs('umount', target);
    await zfs.zfs('mount', target);
    const expected = await snapshotTree(sourceDir);
    expect(expected).toHaveProperty(['new-dir/new.bin']);
    expect(expected).not.toHaveProperty(['sub/deeper/zeros.bin']);
    expect(await snapshotTree(await mountpointOf(target))).toEqual(expected);
  });

  it('leaves no half-received dataset when the source fails midway', async () => {
    const idle = await zfs.requestDescriptors();
    const stream = join(streams.path, 'source-fails');
    const target = `${b.name}/failed`;
    expect(fullStreamBytes).toBeGreaterThan(3 * MiB);
    // Half of the stream, then wait until the partial stream has reached zfs recv on the target
    // (the receive shows the dataset while it runs), then fail: a truncated, aborted stream.
    const script = [
      `"${zfs.zfsPath}" send "${source}@s1" | head -c ${3 * MiB}`,
      `for i in $(seq 300); do "${zfs.zfsPath}" list -H "${target}" >/dev/null 2>&1 && exit 1; sleep 0.1; done`,
      'exit 2',
    ].join('; ');
    const receiver = bucketpipe(['receive', stream, ...fastReceive, '--', zfs.zfsPath, 'recv', target]);
    const sent = await run(['send', stream, ...fastSend, '--', 'sh', '-c', script]);
    const received = await receiver.done;
    // Exit 1 (not 2): the dataset was seen on the target while the partial stream was in.
    expect(errorLine(sent.stderr)).toContain('exited with code 1');
    expect(sent.code, sent.stderr).toBe(6);
    expect(received.code, received.stderr).toBe(6);
    expect(errorLine(received.stderr)).toContain('[BP_STREAM_ABORTED]');
    await expectNoDataset(target, idle);
  });

  it('marks a zfs send stream piped in and cut short aborted, not complete: mid-record, just before the END record, one byte short', async () => {
    for (const cut of [1_500_000, fullStreamBytes - 312, fullStreamBytes - 1]) {
      const stream = join(streams.path, `truncated-${cut}`);
      const cli = [process.execPath, cliPath, 'send', stream, ...fastSend].map((a) => `'${a}'`).join(' ');
      const piped = await execFileAsync('sh', ['-c', `"${zfs.zfsPath}" send "${source}@s1" | head -c ${cut} | ${cli}`]).then(
        () => ({ code: 0, stderr: '' }),
        (error: { code: number; stderr: string }) => error,
      );
      expect(piped.code, `cut at ${cut}: ${piped.stderr}`).toBe(6);
      expect(errorLine(piped.stderr)).toMatch(
        new RegExp(
          `stdin ended after ${cut} bytes without the END record of the ZFS send stream of ${source}@s1.*\\[BP_SOURCE_TRUNCATED\\]`,
        ),
      );
      const manifest = await readJson(join(stream, 'manifest.json'));
      expect(manifest.state).toBe('aborted');
      const verified = await run(['verify', stream]);
      expect(verified.code).toBe(6); // aborted, not OK
    }
    // The whole stream through the same pipe completes.
    const whole = join(streams.path, 'piped-whole');
    const cli = [process.execPath, cliPath, 'send', whole, ...fastSend].map((a) => `'${a}'`).join(' ');
    await execFileAsync('sh', ['-c', `"${zfs.zfsPath}" send "${source}@s1" | ${cli}`]);
    expect((await readJson(join(whole, 'manifest.json'))).state).toBe('complete');
  });

  it('leaves no half-received dataset when the receiver is interrupted midway, and a second receive replays the stream into a whole one', async () => {
    const idle = await zfs.requestDescriptors();
    const stream = join(streams.path, 'interrupted');
    const target = `${b.name}/interrupted`;
    // About 6.5 MiB at 1.5 MB/s: four to five seconds.
    const paced = `"${zfs.zfsPath}" send "${source}@s1" | "${process.execPath}" "${join(fixtures, 'paced-cat.mjs')}" /dev/stdin 1500000`;
    const sender = bucketpipe(['send', stream, ...fastSend, '--', 'sh', '-c', paced]);
    let senderDone = false;
    const sent = sender.done.finally(() => {
      senderDone = true;
    });
    const receiver = bucketpipe(['receive', stream, ...fastReceive, '--', zfs.zfsPath, 'recv', target]);
    await waitFor(async () => ((await zfs.list(target)).length > 0 ? true : undefined), 30_000, `${target} to appear while receiving`);
    await sleep(300);
    expect(senderDone).toBe(false);
    receiver.child.kill('SIGTERM');
    const received = await receiver.done;
    expect(received.code, received.stderr).toBe(130);
    expect(errorLine(received.stderr)).toContain('[BP_INTERRUPTED]');
    await expectNoDataset(target, idle);

    // The sender was never disturbed; a new receive replays the whole stream from the store.
    const sendResult = await sent;
    expect(sendResult.code, sendResult.stderr).toBe(0);
    const again = await run(['receive', stream, ...fastReceive, '--', zfs.zfsPath, 'recv', target]);
    expect(again.code, again.stderr).toBe(0);
    expect(await zfs.list(target)).toEqual([target, `${target}@s1`]);
    expect(await snapshotTree(await mountpointOf(target))).toEqual(filesAtS1);
  });

  it('survives the sender killed midway: the receive waits, a resumed send (--takeover) completes it, files identical', async () => {
    const stream = join(streams.path, 'sender-killed');
    const target = `${b.name}/resumed`;
    // About 6.5 MiB at 1.5 MB/s; the stream is the same bytes every time (zfs send of one snapshot).
    const paced = `"${zfs.zfsPath}" send "${source}@s1" | "${process.execPath}" "${join(fixtures, 'paced-cat.mjs')}" /dev/stdin 1500000`;
    const first = bucketpipe(['send', stream, ...fastSend, '--', 'sh', '-c', paced], { detached: true });
    const receiver = bucketpipe(['receive', stream, ...fastReceive, '--', zfs.zfsPath, 'recv', target]);
    await waitFor(
      async () => {
        const inspected = await run(['inspect', stream, '--json']);
        if (inspected.code !== 0) return undefined;
        return (JSON.parse(inspected.stdout) as { manifest: { watermark: number } }).manifest.watermark >= 8 ? true : undefined;
      },
      30_000,
      'the first sender to store 8 chunks',
    );
    // The sender and its zfs send die at once (the whole process group), as in a crash of the VM's agent.
    if (first.child.pid === undefined) throw new Error('no pid');
    process.kill(-first.child.pid, 'SIGKILL');
    await first.done;
    try {
      // The receive is not done: its zfs recv has a partial stream and no end record. The dead
      // sender's heartbeat must age past --stale-after before the stream may be taken over.
      await sleep(1500);
      expect(await zfs.list(target)).not.toEqual([target, `${target}@s1`]);

      const resumed = await run([
        'send',
        stream,
        ...fastSend,
        '--takeover',
        '--stale-after',
        '1s',
        '--',
        zfs.zfsPath,
        'send',
        `${source}@s1`,
      ]);
      expect(resumed.code, resumed.stderr).toBe(0);
      const summary = summaryOf(resumed.stderr) as { resumedFrom: number; chunks: number; rawBytes: number };
      expect(summary.resumedFrom).toBeGreaterThanOrEqual(8);
      expect(summary.rawBytes).toBe(fullStreamBytes);
    } finally {
      // Never leave a zfs recv behind (the pool could not be destroyed): stop a receive that hangs.
      if (receiver.child.exitCode === null) setTimeout(() => receiver.child.kill('SIGTERM'), 30_000).unref();
    }
    const received = await receiver.done;
    expect(received.code, received.stderr).toBe(0);
    expect(await zfs.list(target)).toEqual([target, `${target}@s1`]);
    expect(await snapshotTree(await mountpointOf(target))).toEqual(filesAtS1);
  });

  it('leaves no half-received dataset when the receiver is killed outright (SIGKILL: the kernel closes the pipe, nothing kills zfs recv)', async () => {
    const idle = await zfs.requestDescriptors();
    const stream = join(streams.path, 'killed');
    const target = `${b.name}/killed`;
    const paced = `"${zfs.zfsPath}" send "${source}@s1" | "${process.execPath}" "${join(fixtures, 'paced-cat.mjs')}" /dev/stdin 1500000`;
    const sender = bucketpipe(['send', stream, ...fastSend, '--', 'sh', '-c', paced]);
    const receiver = bucketpipe(['receive', stream, ...fastReceive, '--', zfs.zfsPath, 'recv', target]);
    await waitFor(async () => ((await zfs.list(target)).length > 0 ? true : undefined), 30_000, `${target} to appear while receiving`);
    await sleep(300);
    receiver.child.kill('SIGKILL');
    expect((await receiver.done).signal).toBe('SIGKILL');
    await expectNoDataset(target, idle);
    // The orphaned `zfs recv` (its own process group) saw the daemon's receive fail and exited.
    const recvClients = async () => {
      const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name));
      const cmdlines = await Promise.all(pids.map((pid) => readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')));
      return cmdlines.filter((cmdline) => cmdline.split('\0').includes(target));
    };
    await waitFor(async () => ((await recvClients()).length === 0 ? true : undefined), 10_000, 'the zfs recv client to exit');
    const sendResult = await sender.done;
    expect(sendResult.code, sendResult.stderr).toBe(0);
  });
});
