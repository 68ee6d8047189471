import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  bucketpipe,
  cliPath,
  fixtures,
  MiB,
  mixedInputSuite,
  outputFile,
  readJson,
  run,
  sha256File,
  streamDigestOfFile,
  summaryOf,
  waitFor,
} from './helpers.js';

const execFileAsync = promisify(execFile);
const fast = ['--poll-interval', '200ms'];
const fastSend = ['--chunk-size', '4MiB', '--manifest-interval', '200ms'];

describe('send and receive through a directory, as separate processes', () => {
  const suite = mixedInputSuite('e2e', 256 * MiB);

  async function receiveInto(stream: string, name: string) {
    const out = await outputFile(join(suite.dir, name));
    const receiver = bucketpipe(['receive', stream, ...fast], { stdoutFile: out.fd });
    return {
      receiver,
      path: join(suite.dir, name),
      done: receiver.done.finally(() => out.close()),
    };
  }

  it('moves 256 MiB byte-identical with sender and receiver started together', async () => {
    const stream = join(suite.dir, 'together');
    const { done: received, path } = await receiveInto(stream, 'together.out');
    const sent = await run(['send', stream, ...fastSend, '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    const result = await received;
    expect(result.code, result.stderr).toBe(0);
    expect(await sha256File(path)).toBe(suite.sha256);
    const sendSummary = summaryOf(sent.stderr);
    const digest = await streamDigestOfFile(suite.input, 4 * MiB);
    expect(sendSummary).toMatchObject({ command: 'send', state: 'complete', rawBytes: 256 * MiB, chunks: 64, digest });
    expect(summaryOf(result.stderr)).toMatchObject({ command: 'receive', rawBytes: 256 * MiB, digest });
    expect(sendSummary.storedBytes as number).toBeLessThan(256 * MiB);

    // The disaster-recovery path: no bucketpipe needed to rebuild the stream.
    const { stdout } = await execFileAsync('sh', ['-c', `cat "${stream}"/chunks/* | zstd -d -q | sha256sum`], { maxBuffer: 1024 });
    expect(stdout.split(' ')[0]).toBe(suite.sha256);
  });

  it('keeps every byte of a source command that ends before the send reads it (a small zfs increment)', async () => {
    // Node discards what an exited child left in a stdout pipe no one listened to yet: this once
    // turned such a source into an empty, complete stream.
    const stream = join(suite.dir, 'short-command');
    const sent = await run(['send', stream, ...fastSend, '--', 'printf', 'a short stream']);
    expect(sent.code, sent.stderr).toBe(0);
    expect(summaryOf(sent.stderr)).toMatchObject({ state: 'complete', rawBytes: 14, chunks: 1 });
    const received = await run(['receive', stream, ...fast]);
    expect(received.code, received.stderr).toBe(0);
    expect(received.stdout).toBe('a short stream');
  });

  it('writes chunk format 1 when asked to (--chunk-version 1, for older readers) and reads it back like format 2', async () => {
    const stream = join(suite.dir, 'chunk-v1');
    const sent = await run(['send', stream, ...fastSend, '--chunk-version', '1', '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    const versionOf = async (dir: string, index: number) =>
      (await readFile(join(dir, 'chunks', String(index).padStart(12, '0')))).readUInt16LE(12);
    expect([await versionOf(stream, 0), await versionOf(stream, 63)]).toEqual([1, 1]);
    expect(await versionOf(join(suite.dir, 'together'), 0)).toBe(2); // the default, from the first test
    const { done: received, path } = await receiveInto(stream, 'chunk-v1.out');
    const result = await received;
    expect(result.code, result.stderr).toBe(0);
    expect(await sha256File(path)).toBe(suite.sha256);
    const { stdout } = await execFileAsync('sh', ['-c', `cat "${stream}"/chunks/* | zstd -d -q | sha256sum`], { maxBuffer: 1024 });
    expect(stdout.split(' ')[0]).toBe(suite.sha256);

    const refused = await run(['send', join(suite.dir, 'chunk-v3'), '--chunk-version', '3', '--', 'printf', 'x']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--chunk-version/);
  });

  it('works with the receiver started first, waiting for the stream to appear', async () => {
    const stream = join(suite.dir, 'receiver-first');
    const { receiver, done: received, path } = await receiveInto(stream, 'receiver-first.out');
    await waitFor(() => (receiver.stderr().includes('waiting for the stream to start') ? true : undefined), 20_000, 'receiver to wait');
    const sent = await run(['send', stream, ...fastSend, '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    const result = await received;
    expect(result.code, result.stderr).toBe(0);
    expect(await sha256File(path)).toBe(suite.sha256);
  });

  it('works with the receiver started after the sender finished, and inspect tells where the stream stands', async () => {
    const stream = join(suite.dir, 'receiver-after');
    const sent = await run(['send', stream, ...fastSend, '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    const manifest = await readJson(join(stream, 'manifest.json'));
    expect(manifest).toMatchObject({ state: 'complete', watermark: 64, rawBytes: 256 * MiB, chunkSize: 4 * MiB });

    const { done: received, path } = await receiveInto(stream, 'receiver-after.out');
    const result = await received;
    expect(result.code, result.stderr).toBe(0);
    expect(await sha256File(path)).toBe(suite.sha256);
    // One manifest read and one GET per chunk; the only writes are the receiver's cursor.
    expect(summaryOf(result.stderr).requests).toMatchObject({ get: 65, head: 0, list: 0, delete: 0 });

    const inspected = await run(['inspect', stream]);
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(inspected.stdout).toMatch(/state\s+complete/);
    expect(inspected.stdout).toMatch(/stored is \d+% of raw .*compression, not loss/);
    expect(inspected.stdout).toMatch(/receiver \S+\s+done: chunk 64\/64/);
    const asJson = JSON.parse((await run(['inspect', stream, '--json'])).stdout) as {
      manifest: { streamId: string };
      receivers: unknown[];
    };
    expect(asJson.manifest.streamId).toBe(manifest.streamId);
    expect(asJson.receivers).toHaveLength(1);
  });

  it('writes into a shell pipe, also when the reader is slow or the pipe was made non-blocking, and into a sink command whose output is the result', async () => {
    const stream = join(suite.dir, 'pipes');
    const sent = await run(['send', stream, ...fastSend, '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    const cli = `"${process.execPath}" "${cliPath}"`;
    const shell = async (script: string) =>
      (await execFileAsync('bash', ['-o', 'pipefail', '-c', script], { maxBuffer: 1024 * 1024 })).stdout;

    // A pipe the shell made (blocking), read slowly so that the writer has to wait for room.
    expect(await shell(`${cli} receive "${stream}" -q | (sleep 1; sha256sum)`)).toMatch(new RegExp(`^${suite.sha256} `));
    // A parent that switched the shared pipe to non-blocking mode (as any Node.js parent touching its stdout does).
    const nonBlockingParent = `"${process.execPath}" -e 'process.stdout; const r = require("node:child_process").spawnSync(process.argv[1], process.argv.slice(2), { stdio: "inherit" }); process.exit(r.status ?? 1)'`;
    expect(await shell(`${nonBlockingParent} ${cli} receive "${stream}" -q | (sleep 1; sha256sum)`)).toMatch(
      new RegExp(`^${suite.sha256} `),
    );
    // A sink command that exits 0 right after end-of-input, printing its result.
    const viaCommand = await run(['receive', stream, '-q', '--', 'sha256sum']);
    expect(viaCommand.code, viaCommand.stderr).toBe(0);
    expect(viaCommand.stdout).toMatch(new RegExp(`^${suite.sha256} `));
  });

  it('is real time: the receiver writes data while a throttled sender is still running', async () => {
    const stream = join(suite.dir, 'realtime');
    const { done: received, path } = await receiveInto(stream, 'realtime.out');
    // 4 MiB/s for 10 s through 1 MiB chunks.
    const sender = bucketpipe([
      'send',
      stream,
      '--chunk-size',
      '1MiB',
      '--manifest-interval',
      '200ms',
      '--',
      process.execPath,
      join(fixtures, 'throttled-source.mjs'),
      String(4 * MiB),
      String(40 * MiB),
    ]);
    let senderDone = false;
    const sent = sender.done.finally(() => {
      senderDone = true;
    });
    const firstBytesAt = await waitFor(
      async () => ((await stat(path)).size > 0 ? { senderDone, size: (await stat(path)).size } : undefined),
      30_000,
      'first received bytes',
    );
    expect(firstBytesAt.senderDone).toBe(false);
    expect((await sent).code).toBe(0);
    const result = await received;
    expect(result.code, result.stderr).toBe(0);
    expect((await stat(path)).size).toBe(40 * MiB);
  });
});
