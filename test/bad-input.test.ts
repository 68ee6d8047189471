import { execFileSync } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { reachableByOthers } from '@bucketpipe/store-testkit';
import { beforeAll, describe, expect, it } from 'vitest';
import { bucketpipe, cliPath, errorLine, MiB, mixedInputSuite, outputFile, readJson, run, waitFor } from './helpers.js';

const chunkSize = 1 * MiB;
const streamBytes = 8 * MiB + 12345;
const sendArgs = ['--chunk-size', '1MiB', '--manifest-interval', '100ms'];
const receiveArgs = ['--missing-chunk-timeout', '1s', '--poll-interval', '100ms'];
const chunk = (stream: string, index: number) => join(stream, 'chunks', String(index).padStart(12, '0'));

describe('bad input: a clear one-line error, a non-zero exit, and no wrong byte in the sink', () => {
  const suite = mixedInputSuite('bad', streamBytes, 7);
  let inputBytes: Buffer;

  beforeAll(async () => {
    inputBytes = await readFile(suite.input);
  });

  async function sendStream(name: string): Promise<string> {
    const stream = join(suite.dir, name);
    const sent = await run(['send', stream, ...sendArgs, '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    return stream;
  }

  /** Receives into a file; returns the result and what reached the sink. */
  async function receiveToFile(stream: string, name: string) {
    const path = join(suite.dir, name);
    const out = await outputFile(path);
    const result = await run(['receive', stream, ...receiveArgs], { stdoutFile: out.fd });
    await out.close();
    return { result, written: await readFile(path) };
  }

  /** Whatever reached the sink is a prefix of the input and ends before the bad chunk. */
  function expectCleanPrefix(written: Buffer, badIndex: number) {
    expect(written.length).toBeLessThanOrEqual(badIndex * chunkSize);
    expect(written.length % chunkSize).toBe(0);
    expect(written.equals(inputBytes.subarray(0, written.length))).toBe(true);
  }

  it('refuses a second sender on the same stream, while the first runs and after it completed', async () => {
    const stream = join(suite.dir, 'second-sender');
    const first = bucketpipe(['send', stream, ...sendArgs, '--', 'sh', '-c', `sleep 2; cat "${suite.input}"`]);
    await waitFor(
      () =>
        stat(join(stream, 'manifest.json')).then(
          () => true,
          () => undefined,
        ),
      10_000,
      'first manifest',
    );
    const second = await run(['send', stream, ...sendArgs, '--', 'cat', suite.input]);
    expect(second.code).toBe(4);
    expect(errorLine(second.stderr)).toMatch(/already has a sender .* only one sender may write a stream/);
    expect((await first.done).code).toBe(0);
    const third = await run(['send', stream, ...sendArgs, '--', 'cat', suite.input]);
    expect(third.code).toBe(4);
    expect(errorLine(third.stderr)).toMatch(/already exists and is complete/);
    expect((await readJson(join(stream, 'manifest.json'))).state).toBe('complete');
  });

  it('stops at a chunk with a flipped byte, naming it', async () => {
    const stream = await sendStream('flipped');
    const bytes = await readFile(chunk(stream, 3));
    bytes[bytes.length - 100] = (bytes[bytes.length - 100] ?? 0) ^ 0x01;
    await writeFile(chunk(stream, 3), bytes);
    const { result, written } = await receiveToFile(stream, 'flipped.out');
    expect(result.code).toBe(5);
    expect(errorLine(result.stderr)).toMatch(/chunk chunks\/000000000003 failed its payload CRC-32 check .*BP_CHUNK_CHECKSUM/);
    expectCleanPrefix(written, 3);
  });

  it('stops at a chunk copied in from another stream', async () => {
    const stream = await sendStream('foreign');
    const other = await sendStream('foreign-other');
    await copyFile(chunk(other, 2), chunk(stream, 2));
    const { result, written } = await receiveToFile(stream, 'foreign.out');
    expect(result.code).toBe(5);
    expect(errorLine(result.stderr)).toMatch(
      /chunk chunks\/000000000002 belongs to stream [0-9a-f-]{36}, not [0-9a-f-]{36}.*BP_CHUNK_FOREIGN/,
    );
    expectCleanPrefix(written, 2);
  });

  it('stops at a truncated chunk', async () => {
    const stream = await sendStream('truncated');
    const size = (await stat(chunk(stream, 5))).size;
    await truncate(chunk(stream, 5), size - 1000);
    const { result, written } = await receiveToFile(stream, 'truncated.out');
    expect(result.code).toBe(5);
    expect(errorLine(result.stderr)).toMatch(/chunk chunks\/000000000005 is corrupt: truncated.*BP_CHUNK_CORRUPT/);
    expectCleanPrefix(written, 5);
  });

  it('stops at a chunk missing below the watermark', async () => {
    const stream = await sendStream('missing');
    await rm(chunk(stream, 4));
    const { result, written } = await receiveToFile(stream, 'missing.out');
    expect(result.code).toBe(5);
    expect(errorLine(result.stderr)).toMatch(/chunk chunks\/000000000004 is missing .* every chunk below 9 is stored.*BP_CHUNK_MISSING/);
    expectCleanPrefix(written, 4);
  });

  it('refuses a malformed manifest', async () => {
    const stream = await sendStream('malformed');
    const manifest = await readJson(join(stream, 'manifest.json'));
    await writeFile(join(stream, 'manifest.json'), JSON.stringify({ ...manifest, watermark: 'lots' }));
    const { result, written } = await receiveToFile(stream, 'malformed.out');
    expect(result.code).toBe(4);
    expect(errorLine(result.stderr)).toMatch(
      /manifest .*manifest.json is malformed \("watermark" must be a non-negative integer\).*BP_MANIFEST_MALFORMED/,
    );
    expect(written.length).toBe(0);
    await writeFile(join(stream, 'manifest.json'), '{"format": "bucketpipe.manifest", "version": 1, ');
    const again = await receiveToFile(stream, 'malformed2.out');
    expect(again.result.code).toBe(4);
    expect(errorLine(again.result.stderr)).toMatch(/is malformed \(not valid JSON\)/);
  });

  it('refuses a manifest written by a newer version', async () => {
    const stream = await sendStream('newer');
    const manifest = await readJson(join(stream, 'manifest.json'));
    await writeFile(join(stream, 'manifest.json'), JSON.stringify({ ...manifest, version: 2 }));
    const { result } = await receiveToFile(stream, 'newer.out');
    expect(result.code).toBe(4);
    expect(errorLine(result.stderr)).toMatch(/format version 2, newer than this bucketpipe understands \(1\): upgrade bucketpipe/);
  });

  it('rejects an unknown URL scheme, a missing directory, a read-only directory and --chunk-size 0', async () => {
    const scheme = await run(['send', 'ftp://host/stream', '--', 'true']);
    expect(scheme.code).toBe(2);
    expect(errorLine(scheme.stderr)).toMatch(/unknown URL scheme "ftp:\/\/" .*supported are file:\/\//);

    const missingParent = join(suite.dir, 'no-such-dir', 'stream');
    for (const command of [
      ['send', missingParent, '--', 'true'],
      ['receive', missingParent],
    ]) {
      const missing = await run(command);
      expect(missing.code).toBe(3);
      expect(errorLine(missing.stderr)).toMatch(/directory .*no-such-dir does not exist: create it first \(mkdir -p .*no-such-dir\)/);
    }

    // Root ignores directory permissions: run the CLI as an unprivileged user when we are root. That
    // user must reach the CLI: not so in a clone inside a `mktemp -d` directory (mode 0700).
    const root = process.getuid?.() === 0;
    if (!root || reachableByOthers(cliPath)) {
      const readOnly = join(suite.dir, 'read-only');
      await mkdir(readOnly);
      await chmod(readOnly, 0o555);
      if (root) await chmod(suite.dir, 0o755);
      const denied = await run(['send', join(readOnly, 'stream'), '--', 'true'], root ? { uid: 65534, gid: 65534 } : {});
      expect(denied.code).toBe(3);
      expect(errorLine(denied.stderr)).toMatch(/permission denied \(EACCES\).*give this user write access/);
    } else {
      console.log(`bad-input: read-only directory case skipped: uid 65534 cannot reach ${cliPath}`);
    }

    const zero = await run(['send', join(suite.dir, 'zero'), '--chunk-size', '0', '--', 'true']);
    expect(zero.code).toBe(2);
    expect(errorLine(zero.stderr)).toMatch(/--chunk-size 0: must be from 64.0 KiB to 1.00 GiB/);
    await expect(stat(join(suite.dir, 'zero'))).rejects.toThrow();
  });

  it('marks the stream aborted when the source command fails, and kills the sink command before it sees end-of-input', async () => {
    const stream = join(suite.dir, 'source-fails');
    const marker = join(suite.dir, 'sink-saw-eof');
    const receiver = bucketpipe(['receive', stream, ...receiveArgs, '--', 'sh', '-c', `cat > /dev/null; touch "${marker}"`]);
    const sent = await run(['send', stream, ...sendArgs, '--', 'sh', '-c', `head -c 5000000 "${suite.input}"; sleep 0.5; exit 3`]);
    expect(sent.code).toBe(6);
    expect(errorLine(sent.stderr)).toMatch(/source command "sh -c .*" exited with code 3: the stream was marked aborted/);
    const manifest = await readJson(join(stream, 'manifest.json'));
    expect(manifest.state).toBe('aborted');
    expect(manifest.abortReason).toMatch(/exited with code 3/);
    const received = await receiver.done;
    expect(received.code).toBe(6);
    expect(errorLine(received.stderr)).toMatch(/was aborted by its sender .*the sink was stopped before end-of-input/);
    await expect(stat(marker)).rejects.toThrow();
  });

  it('fails when the sink command fails, and says so', async () => {
    const stream = await sendStream('sink-fails');
    const received = await run(['receive', stream, ...receiveArgs, '--', 'sh', '-c', 'head -c 1000 > /dev/null; exit 3']);
    expect(received.code).toBe(7);
    expect(errorLine(received.stderr)).toMatch(/sink command "sh -c .*" exited with code 3 before the stream ended/);
    const cursor = JSON.parse(execFileSync('sh', ['-c', `cat "${stream}"/receivers/*.json`], { encoding: 'utf8' })) as { state: string };
    expect(cursor.state).toBe('failed');
  });

  it('fails when a sink command that exits 0 too early, and when one that does not exist', async () => {
    const stream = await sendStream('sink-early');
    const early = await run(['receive', stream, ...receiveArgs, '--', 'true']);
    expect(early.code).toBe(7);
    expect(errorLine(early.stderr)).toMatch(/sink command "true" exited with code 0 before the stream ended/);
    const absent = await run(['receive', stream, ...receiveArgs, '--', 'no-such-command-xyz']);
    expect(absent.code).toBe(7);
    expect(errorLine(absent.stderr)).toMatch(/cannot run sink command "no-such-command-xyz": command not found/);
  });
});
