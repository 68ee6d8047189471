import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bucketpipe, fixtures, MiB, mixedInputSuite, outputFile, waitFor } from './helpers.js';

describe('inspect --watch', () => {
  const suite = mixedInputSuite('inspect-watch', 6 * MiB, 3);

  it('refreshes while a live send runs, with changing numbers, rates and lag, and ends once the stream is complete and its receiver done', async () => {
    const stream = join(suite.dir, 'live');
    // A live source: 6 MiB at 1.5 MB/s, about 4 s.
    const sender = bucketpipe([
      'send',
      stream,
      '--chunk-size',
      '256KiB',
      '--manifest-interval',
      '200ms',
      '--',
      process.execPath,
      join(fixtures, 'paced-cat.mjs'),
      suite.input,
      '1500000',
    ]);
    const out = await outputFile(join(suite.dir, 'live.out'));
    const receiver = bucketpipe(['receive', stream, '--receiver-id', 'dst', '--poll-interval', '200ms'], { stdoutFile: out.fd });
    const received = receiver.done.finally(() => out.close());
    await waitFor(
      () =>
        access(join(stream, 'manifest.json')).then(
          () => true,
          () => undefined,
        ),
      20_000,
      'the manifest',
    );

    const watched = await bucketpipe(['inspect', stream, '--watch', '--interval', '500ms']).done;
    const [sent, got] = await Promise.all([sender.done, received]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(got.code, got.stderr).toBe(0);
    expect(watched.code, watched.stderr).toBe(0);

    // Not a terminal: one block per refresh, each under a "--- <time>" line.
    const blocks = watched.stdout.split(/^--- \S+\n/m).filter((b) => b.trim() !== '');
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    const chunks = blocks.map((b) => Number(/^chunks\s+(\d+) stored/m.exec(b)?.[1]));
    expect(new Set(chunks).size, watched.stdout).toBeGreaterThanOrEqual(3); // the numbers changed between refreshes
    expect(chunks).toEqual([...chunks].sort((a, b) => a - b));
    expect(blocks[0]).toMatch(/sender rate\s+measuring…/);
    const senderRates = blocks.flatMap((b) => /^sender rate\s+([\d.]+) MB\/s raw; ETA unknown/m.exec(b)?.[1] ?? []).map(Number);
    expect(
      senderRates.some((r) => r > 0.5 && r < 5),
      watched.stdout,
    ).toBe(true); // about the source's 1.5 MB/s
    expect(watched.stdout).toMatch(
      /receiver dst\s+receiving: chunk \d+\/\d+.*\n\s+[\d.]+ MB\/s · lag \d+ chunks? \([^)]*\) · ETA unknown \(the stream is still being sent\)/,
    );
    const last = blocks.at(-1) ?? '';
    expect(last).toMatch(/state\s+complete/);
    expect(last).toMatch(/receiver dst\s+done: chunk 24\/24/);
    expect(last).toMatch(/lag 0 chunks \(0 B\); done/);
  });

  it('ends on SIGINT with status 130 and no error line', async () => {
    const stream = join(suite.dir, 'held');
    // A sender whose source never ends: the watch would go on forever.
    const sender = bucketpipe(['send', stream, '--chunk-size', '64KiB', '--', 'sleep', '60']);
    await waitFor(
      () =>
        access(join(stream, 'manifest.json')).then(
          () => true,
          () => undefined,
        ),
      20_000,
      'the manifest',
    );
    const watch = bucketpipe(['inspect', stream, '--watch', '--interval', '200ms']);
    let stdout = '';
    watch.child.stdout?.on('data', (text: string) => {
      stdout += text;
    });
    await waitFor(() => ((stdout.match(/^--- /gm)?.length ?? 0) >= 2 ? true : undefined), 20_000, 'two refreshes');
    watch.child.kill('SIGINT');
    const ended = await watch.done;
    expect(ended.code).toBe(130);
    expect(ended.stderr).toBe('');
    sender.child.kill('SIGINT');
    await sender.done;
  });
});
