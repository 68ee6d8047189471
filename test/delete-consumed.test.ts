import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bucketpipe, MiB, mixedInputSuite, outputFile, run, sampler, sha256File, summaryOf } from './helpers.js';

const CHUNK = 64 * 1024;
const CHUNKS = (8 * MiB) / CHUNK;
const MAX_LAG = 16; // --max-lag 1MiB with 64 KiB chunks

/** Chunk objects present in a directory stream (the store's dot-files left out). */
async function chunkCount(stream: string): Promise<number> {
  const names = await readdir(join(stream, 'chunks')).catch(() => [] as string[]);
  return names.filter((n) => /^\d{12}$/.test(n)).length;
}

describe('receive --delete-consumed', () => {
  const suite = mixedInputSuite('delete-consumed', 8 * MiB, 11);

  it('keeps the bucket bounded with send --max-lag, writes the stream byte for byte, and leaves no chunk objects', async () => {
    const stream = join(suite.dir, 'stream');
    const outPath = join(suite.dir, 'stream.out');
    const out = await outputFile(outPath);
    const receiver = bucketpipe(
      ['receive', stream, '--delete-consumed', '--receiver-id', 'deleting', '--poll-interval', '200ms', '--rate', '2MB/s'],
      { stdoutFile: out.fd },
    );
    const received = receiver.done.finally(() => out.close());
    const sender = bucketpipe([
      'send',
      stream,
      '--chunk-size',
      '64KiB',
      '--manifest-interval',
      '200ms',
      '--max-lag',
      '1MiB',
      '--',
      'cat',
      suite.input,
    ]);

    const sampling = sampler(() => chunkCount(stream), 50);
    const sent = await sender.done;
    const got = await received;
    const samples = await sampling.stop();

    expect(sent.code, sent.stderr).toBe(0);
    expect(got.code, got.stderr).toBe(0);
    expect(await sha256File(outPath)).toBe(suite.sha256);
    expect(summaryOf(got.stderr)).toMatchObject({ chunks: CHUNKS, chunksDeleted: CHUNKS });

    const worst = Math.max(...samples);
    console.log(
      `delete-consumed: ${samples.length} samples, at most ${worst} chunk objects present (stream of ${CHUNKS} chunks, --max-lag ${MAX_LAG})`,
    );
    expect(samples.filter((n) => n > 0).length).toBeGreaterThan(20); // the sampling saw the transfer
    // The lag window, plus the chunks consumed but not yet deleted (a pass every 16 chunks or 2 s) and the cursor's delay.
    expect(worst).toBeLessThanOrEqual(MAX_LAG + 16 + 8);
    expect(worst).toBeLessThan(CHUNKS / 2);
    expect(await chunkCount(stream)).toBe(0);

    // The manifest stays: inspect works; verify reports the chunks as missing.
    const inspected = await run(['inspect', stream]);
    expect(inspected.code, inspected.stderr).toBe(0);
    const verified = await run(['verify', stream]);
    expect(verified.code).not.toBe(0);
    expect(`${verified.stdout}${verified.stderr}`).toMatch(/BP_CHUNK_MISSING|missing/);
  });

  it('without the option deletes nothing', async () => {
    const stream = join(suite.dir, 'kept');
    const sent = await run(['send', stream, '--chunk-size', '64KiB', '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    const got = await run(['receive', stream, '--output', join(suite.dir, 'kept.out')]);
    expect(got.code, got.stderr).toBe(0);
    expect(await chunkCount(stream)).toBe(CHUNKS);
    expect(summaryOf(got.stderr)).not.toHaveProperty('chunksDeleted');
  });
});
