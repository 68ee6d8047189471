import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { errorLine, MiB, mixedInputSuite, readJson, run } from './helpers.js';

const streamBytes = 8 * MiB + 12345; // 9 chunks of 1 MiB, the last one short
const chunk = (stream: string, index: number) => join(stream, 'chunks', String(index).padStart(12, '0'));
const key = (index: number) => `chunks/${String(index).padStart(12, '0')}`;

/**
 * The chunk object with `extra` appended to its payload and its header made consistent again
 * (payload length, payload check, CRC), as FORMAT §2.1 lays them out: v1 the payload's SHA-256,
 * v2 its CRC-32.
 */
function withBytesAfterPayload(object: Buffer, extra: Uint8Array): Buffer {
  const forged = Buffer.concat([object, extra]);
  forged.writeBigUInt64LE(BigInt(forged.length - 128), 48);
  if (forged.readUInt16LE(12) === 1) createHash('sha256').update(forged.subarray(128)).digest().copy(forged, 88);
  else forged.writeUInt32LE(crc32(forged.subarray(128)), 88);
  forged.writeUInt32LE(crc32(forged.subarray(8, 124)), 124);
  return forged;
}

describe('bucketpipe verify', () => {
  const suite = mixedInputSuite('verify', streamBytes, 3);

  async function sendStream(name: string): Promise<string> {
    const stream = join(suite.dir, name);
    const sent = await run(['send', stream, '--chunk-size', '1MiB', '--manifest-interval', '100ms', '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    return stream;
  }

  it('passes an intact stream with exit 0 and a verdict line', async () => {
    const stream = await sendStream('good');
    const result = await run(['verify', stream, '-q']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^OK: 9 chunks, 8\.01 MiB, digest matches \(stream [0-9a-f-]{36}, complete\)\n$/);
  });

  it('names every bad chunk and exits 5; --json prints the same as one object', async () => {
    const stream = await sendStream('bad');
    const bytes = await readFile(chunk(stream, 2));
    bytes[bytes.length - 100] = (bytes[bytes.length - 100] ?? 0) ^ 0x01;
    await writeFile(chunk(stream, 2), bytes);
    await writeFile(chunk(stream, 6), (await readFile(chunk(stream, 6))).subarray(0, 5000));
    await rm(chunk(stream, 7));

    const result = await run(['verify', stream, '-q']);
    expect(result.code, result.stderr).toBe(5);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toEqual([
      `chunk ${key(2)} failed its payload CRC-32 check (altered or damaged in the store) [BP_CHUNK_CHECKSUM]`,
      expect.stringMatching(new RegExp(`^chunk ${key(6)} is corrupt: truncated: .*\\[BP_CHUNK_CORRUPT\\]$`)),
      expect.stringMatching(new RegExp(`^chunk ${key(7)} is missing from .*\\[BP_CHUNK_MISSING\\]$`)),
      expect.stringMatching(/^FAILED: 3 of 9 chunks bad; stream digest not checked/),
    ]);

    const json = await run(['verify', stream, '--json', '-q']);
    expect(json.code).toBe(5);
    const report = JSON.parse(json.stdout) as { verdict: string; chunksChecked: number; problems: Array<{ key: string; code: string }> };
    expect(report.verdict).toBe('failed');
    expect(report.chunksChecked).toBe(8);
    expect(report.problems.map((p) => [p.key, p.code])).toEqual([
      [key(2), 'BP_CHUNK_CHECKSUM'],
      [key(6), 'BP_CHUNK_CORRUPT'],
      [key(7), 'BP_CHUNK_MISSING'],
    ]);
  });

  it('exits 5 on a manifest digest that does not match, 4 on a malformed manifest, 3 when there is no stream', async () => {
    const stream = await sendStream('manifest');
    const manifest = await readJson(join(stream, 'manifest.json'));
    const final = manifest.final as Record<string, unknown>;
    await writeFile(join(stream, 'manifest.json'), JSON.stringify({ ...manifest, final: { ...final, digest: '0'.repeat(64) } }));
    const mismatch = await run(['verify', stream, '-q']);
    expect(mismatch.code).toBe(5);
    expect(mismatch.stdout).toMatch(/stream digest [0-9a-f]{64} does not match final\.digest 0{64} .*\[BP_STREAM_CHECKSUM\]/);

    await writeFile(join(stream, 'manifest.json'), JSON.stringify({ ...manifest, watermark: 'lots' }));
    const malformed = await run(['verify', stream, '-q']);
    expect(malformed.code).toBe(4);
    expect(errorLine(malformed.stderr)).toMatch(/is malformed .*BP_MANIFEST_MALFORMED/);

    const none = await run(['verify', join(suite.dir, 'no-stream'), '-q']);
    expect(none.code).toBe(3);
    expect(errorLine(none.stderr)).toMatch(/no stream at .*no-stream \(no manifest\.json\)/);
  });

  it('refuses a payload that is more than one zstd frame, which zstd -d would read (FORMAT §2.2); receive refuses it too', async () => {
    const stream = await sendStream('frames');
    const skippable = Uint8Array.from([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
    await writeFile(chunk(stream, 3), withBytesAfterPayload(await readFile(chunk(stream, 3)), skippable));
    const expected = await readFile(suite.input);
    const chunkFiles = Array.from({ length: 9 }, (_, index) => chunk(stream, index));
    expect(execFileSync('sh', ['-c', 'cat "$@" | zstd -dq', 'sh', ...chunkFiles], { maxBuffer: 64 * MiB }).equals(expected)).toBe(true);

    const verified = await run(['verify', stream, '-q']);
    expect(verified.code, verified.stderr).toBe(5);
    expect(verified.stdout).toContain(
      `chunk ${key(3)} is not the single zstd frame a chunk's payload must be: 12 bytes follow its zstd frame (another frame, or a skippable one) [BP_CHUNK_DECOMPRESS]`,
    );
    const received = await run(['receive', stream, '-q', '-o', join(suite.dir, 'frames.out')]);
    expect(received.code).toBe(5);
    expect(errorLine(received.stderr)).toMatch(/chunk chunks\/000000000003 is not the single zstd frame .*BP_CHUNK_DECOMPRESS/);
  });

  it("exits 5 when the manifest's storedBytes is not the size of its chunks", async () => {
    const stream = await sendStream('counts');
    const manifest = await readJson(join(stream, 'manifest.json'));
    const storedBytes = manifest.storedBytes as number;
    await writeFile(join(stream, 'manifest.json'), JSON.stringify({ ...manifest, storedBytes: storedBytes - 1 }));
    const result = await run(['verify', stream, '-q']);
    expect(result.code, result.stderr).toBe(5);
    expect(result.stdout).toContain(
      `storedBytes ${storedBytes - 1}: the manifest was altered or written by a faulty sender [BP_MANIFEST_COUNTS]`,
    );
    expect(result.stdout).toMatch(/FAILED: the manifest's byte counts do not match its chunks; digest matches/);
  });

  it('exits 6 for an aborted stream whose stored chunks are intact', async () => {
    const stream = join(suite.dir, 'aborted');
    const sent = await run(['send', stream, '--chunk-size', '1MiB', '--', 'sh', '-c', `head -c 3000000 "${suite.input}"; exit 3`]);
    expect(sent.code).toBe(6);
    const result = await run(['verify', stream, '-q']);
    expect(result.code).toBe(6);
    expect(result.stdout).toMatch(/^ABORTED: the sender aborted the stream \(.*exited with code 3.*\), it can never be received/);
  });
});
