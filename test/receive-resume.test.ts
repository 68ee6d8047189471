import { copyFile, open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  bucketpipe,
  errorLine,
  fixtures,
  MiB,
  mixedInputSuite,
  readJson,
  run,
  sha256File,
  streamDigestOfFile,
  summaryOf,
  waitFor,
  writeMixedStream,
} from './helpers.js';

const chunkSize = 1 * MiB;
const streamBytes = 24 * MiB + 4321; // 25 chunks
const chunks = 25;
const sendArgs = ['--chunk-size', '1MiB', '--manifest-interval', '200ms'];
const receiveArgs = ['--poll-interval', '100ms', '--receiver-id', 'resumer'];

const sizeOf = async (path: string) => (await stat(path).catch(() => ({ size: 0 }))).size;

describe('a receiver killed with SIGKILL and started again with the same command', () => {
  const suite = mixedInputSuite('receive-resume', streamBytes, 21);
  let stream: string;

  beforeAll(async () => {
    stream = join(suite.dir, 'stream');
  });

  it('--output FILE of a live stream: continues after the chunks the file holds, and the file is the stream byte for byte', async () => {
    const output = join(suite.dir, 'received.bin');
    // About 6 MiB/s: four seconds for the whole stream; the receiver follows it live.
    const sender = bucketpipe([
      'send',
      stream,
      ...sendArgs,
      '--',
      process.execPath,
      join(fixtures, 'paced-cat.mjs'),
      suite.input,
      String(6 * MiB),
    ]);
    const first = bucketpipe(['receive', stream, ...receiveArgs, '--output', output]);
    await waitFor(async () => ((await sizeOf(output)) >= 8 * MiB ? true : undefined), 30_000, '8 MiB received');
    first.child.kill('SIGKILL');
    expect((await first.done).signal).toBe('SIGKILL');
    const left = await sizeOf(output);
    expect(left).toBeLessThan(streamBytes);
    const cursor = await readJson(join(stream, 'receivers/resumer.json'));
    expect(cursor.state).toBe('receiving');

    const second = await run(['receive', stream, ...receiveArgs, '--output', output]);
    expect(second.code, second.stderr).toBe(0);
    expect((await sender.done).code).toBe(0);
    expect(await sha256File(output), 'no byte duplicated or dropped').toBe(suite.sha256);

    const kept = Math.floor(left / chunkSize);
    const summary = summaryOf(second.stderr);
    expect(summary).toMatchObject({
      state: 'complete',
      sink: output,
      chunks,
      rawBytes: streamBytes,
      resumedFrom: kept,
      chunksVerified: kept,
      rawBytesVerified: kept * chunkSize,
      bytesDiscarded: left - kept * chunkSize,
      digest: await streamDigestOfFile(suite.input, chunkSize),
    });
    expect(second.stderr).toContain(`holds the first ${kept} chunks`);
    expect(second.stderr).toContain(`receiving from chunk ${kept} on`);
    expect(await readJson(join(stream, 'receivers/resumer.json'))).toMatchObject({
      state: 'done',
      position: chunks,
      rawBytes: streamBytes,
    });

    // Run once more: the file holds the whole stream, nothing is downloaded, it is left as it is.
    const third = await run(['receive', stream, ...receiveArgs, '--output', output]);
    expect(third.code, third.stderr).toBe(0);
    expect(summaryOf(third.stderr)).toMatchObject({ resumedFrom: chunks, rawBytesVerified: streamBytes, bytesDiscarded: 0 });
    expect((summaryOf(third.stderr).requests as Record<string, number>).get).toBe(1 + chunks);
    expect(await sha256File(output)).toBe(suite.sha256);
  });

  it('stdout appended to a file (>> FILE) resumes the same way', async () => {
    const output = join(suite.dir, 'appended.bin');
    const startReceive = async (more: string[]) => {
      const file = await open(output, 'a');
      const running = bucketpipe(['receive', stream, ...receiveArgs, ...more], { stdoutFile: file.fd });
      await file.close();
      return running;
    };
    const first = await startReceive(['--rate', '8MiB/s']);
    await waitFor(async () => ((await sizeOf(output)) >= 6 * MiB ? true : undefined), 30_000, '6 MiB received');
    first.child.kill('SIGKILL');
    await first.done;
    const left = await sizeOf(output);
    expect(left).toBeLessThan(streamBytes);
    const second = await (await startReceive([])).done;
    expect(second.code, second.stderr).toBe(0);
    expect(await sha256File(output), 'no byte duplicated or dropped').toBe(suite.sha256);
    expect(summaryOf(second.stderr)).toMatchObject({ sink: 'stdout', resumedFrom: Math.floor(left / chunkSize) });
  });

  it('a file of another stream, or modified, is refused and left untouched', async () => {
    const other = join(suite.dir, 'other.bin');
    await writeMixedStream(other, 3 * MiB + 5, 99);
    const before = await readFile(other);
    const beforeMtime = (await stat(other)).mtimeMs;
    const refused = await run(['receive', stream, ...receiveArgs, '--output', other]);
    expect(refused.code, refused.stderr).toBe(4);
    expect(errorLine(refused.stderr)).toMatch(
      /other\.bin does not hold the start of stream [0-9a-f-]+: its chunk 0 \(bytes 0…1048575\) differs from the stream's chunk chunks\/000000000000 \(raw SHA-256\); it holds another stream, or was modified\. Nothing was written to it: remove it, or receive into another file \[BP_OUTPUT_MISMATCH\]$/,
    );
    expect((await readFile(other)).equals(before), 'the file is untouched').toBe(true);
    expect((await stat(other)).mtimeMs).toBe(beforeMtime);

    // The start of this stream with one byte changed in chunk 3.
    const modified = join(suite.dir, 'modified.bin');
    await copyFile(suite.input, modified);
    const handle = await open(modified, 'r+');
    await handle.truncate(10 * MiB);
    await handle.write(Buffer.from([0x55 ^ (await readFile(suite.input)).readUInt8(3 * MiB + 9)]), 0, 1, 3 * MiB + 9);
    await handle.close();
    const modifiedSha = await sha256File(modified);
    const refusedAgain = await run(['receive', stream, ...receiveArgs, '--output', modified]);
    expect(refusedAgain.code, refusedAgain.stderr).toBe(4);
    expect(errorLine(refusedAgain.stderr)).toMatch(
      /its chunk 3 .*its first 3 chunks do match: `truncate -s 3145728` keeps them.*\[BP_OUTPUT_MISMATCH\]$/,
    );
    expect(await sha256File(modified)).toBe(modifiedSha);
  });

  it('into a command, restarted: the stream is replayed from chunk 0 out of the store, without the sender', async () => {
    const output = join(suite.dir, 'from-command.bin');
    const command = ['--', 'sh', '-c', `cat > '${output}'`];
    const first = bucketpipe(['receive', stream, ...receiveArgs, '--rate', '8MiB/s', ...command]);
    await waitFor(async () => ((await sizeOf(output)) >= 6 * MiB ? true : undefined), 30_000, '6 MiB received');
    first.child.kill('SIGKILL');
    await first.done;
    // The orphaned `cat` sees end-of-input and exits; what it wrote is a part of the stream.
    await new Promise((r) => setTimeout(r, 300));
    expect(await sizeOf(output)).toBeLessThan(streamBytes);
    const manifest = await readJson(join(stream, 'manifest.json'));
    expect(manifest.state).toBe('complete'); // the sender is long gone

    const second = await run(['receive', stream, ...receiveArgs, ...command]);
    expect(second.code, second.stderr).toBe(0);
    const summary = summaryOf(second.stderr);
    expect(summary).toMatchObject({ chunks, rawBytes: streamBytes });
    expect(summary.resumedFrom).toBeUndefined();
    expect((summary.requests as Record<string, number>).get).toBe(1 + chunks);
    expect(await sha256File(output)).toBe(suite.sha256);
  });

  it('--output refuses a device and a sink command at once', async () => {
    const device = await run(['receive', stream, '--output', '/dev/null']);
    expect(device.code).toBe(2);
    expect(errorLine(device.stderr)).toContain('--output /dev/null is not a regular file');
    const both = await run(['receive', stream, '--output', join(suite.dir, 'x.bin'), '--', 'cat']);
    expect(both.code).toBe(2);
  });
});
