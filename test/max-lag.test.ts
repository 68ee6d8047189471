import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bucketpipe, errorLine, logText, MiB, mixedInputSuite, outputFile, run, sampler, sha256File, summaryOf } from './helpers.js';

const CHUNK = 64 * 1024;
const MAX_LAG = 16; // --max-lag 1MiB with 64 KiB chunks

/** Chunk indexes present in a directory stream (the store's dot-files left out). */
async function chunkIndexes(stream: string): Promise<number[]> {
  const names = await readdir(join(stream, 'chunks')).catch(() => [] as string[]);
  return names.filter((n) => /^\d{12}$/.test(n)).map(Number);
}

/** The slowest position among the stream's receiver cursors; 0 before any has registered. */
async function slowestPosition(stream: string): Promise<number> {
  const names = await readdir(join(stream, 'receivers')).catch(() => [] as string[]);
  const positions: number[] = [];
  for (const name of names.filter((n) => n.endsWith('.json') && !n.startsWith('.'))) {
    const text = await readFile(join(stream, 'receivers', name), 'utf8').catch(() => null);
    if (text !== null) positions.push((JSON.parse(text) as { position: number }).position);
  }
  return positions.length === 0 ? 0 : Math.min(...positions);
}

describe('send --max-lag', () => {
  const suite = mixedInputSuite('max-lag', 8 * MiB, 7);

  it('bounds the chunk objects at or beyond the slowest receiver position by --max-lag, sampled while a slow receiver runs', async () => {
    const stream = join(suite.dir, 'bounded');
    const outPath = join(suite.dir, 'bounded.out');
    const out = await outputFile(outPath);
    // A slow receiver, started first: it registers (publishes its cursor) once the manifest appears.
    const receiver = bucketpipe(['receive', stream, '--receiver-id', 'slow', '--poll-interval', '200ms', '--rate', '2MB/s'], {
      stdoutFile: out.fd,
    });
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

    // Sample while both run. The listing comes first and the cursor after it: positions only grow,
    // so a chunk listed before the cursor was read is counted against a position no smaller than
    // the one the sender had read when it let that chunk be read from the source.
    const sampling = sampler(async () => {
      const indexes = await chunkIndexes(stream);
      const position = await slowestPosition(stream);
      return { beyond: indexes.filter((i) => i >= position).length, position, highest: Math.max(-1, ...indexes) };
    }, 50);
    const sent = await sender.done;
    const got = await received;
    const samples = await sampling.stop();

    expect(sent.code, sent.stderr).toBe(0);
    expect(got.code, got.stderr).toBe(0);
    expect(await sha256File(outPath)).toBe(suite.sha256);
    expect(summaryOf(sent.stderr)).toMatchObject({ chunks: (8 * MiB) / CHUNK });

    const worst = Math.max(...samples.map((s) => s.beyond));
    const during = samples.filter((s) => s.highest >= 0 && s.position < (8 * MiB) / CHUNK);
    console.log(`max-lag ${MAX_LAG}: ${samples.length} samples, at most ${worst} chunk objects at or beyond the slowest receiver position`);
    expect(during.length).toBeGreaterThan(20); // the sampling saw the transfer, not only its end
    expect(worst).toBeLessThanOrEqual(MAX_LAG);
    expect(worst).toBeGreaterThanOrEqual(MAX_LAG - 4); // the window was used: the bound is what held the sender
    expect(sent.stderr).toMatch(new RegExp(`waiting for receiver slow: chunk \\d+, ${MAX_LAG} behind \\(--max-lag ${MAX_LAG}\\)`));
  });

  it('without a receiver, holds for --max-lag-wait, then sends on with a warning', async () => {
    const stream = join(suite.dir, 'alone');
    const started = performance.now();
    const sent = await run(['send', stream, '--chunk-size', '64KiB', '--max-lag', '4', '--max-lag-wait', '1s', '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(performance.now() - started).toBeGreaterThan(900);
    expect(sent.stderr).toMatch(/waiting for a first receiver to register \(--max-lag 4: holding chunk 4\)/);
    expect(logText(sent.stderr)).toMatch(
      /warning: no receiver of this stream has registered within 1s: sending on without the --max-lag bound/,
    );
  });

  it('refuses a --max-lag below one chunk, or that is not a count or size', async () => {
    const small = await run(['send', join(suite.dir, 'x'), '--chunk-size', '64KiB', '--max-lag', '10KiB']);
    expect(small.code).toBe(2);
    expect(errorLine(small.stderr)).toMatch(/--max-lag 10KiB: less than one chunk of 64\.0 KiB/);
    const zero = await run(['send', join(suite.dir, 'x'), '--max-lag', '0']);
    expect(zero.code).toBe(2);
    const wait = await run(['send', join(suite.dir, 'x'), '--max-lag-wait', '5s']);
    expect(errorLine(wait.stderr)).toMatch(/--max-lag-wait applies only with --max-lag/);
  });
});
