import { copyFile, mkdir, readdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketpipe, errorLine, MiB, outputFile, run, sha256File, tempDir, waitFor, writeMixedStream } from './helpers.js';

// What a batch transfer service (or any eventually consistent copy) does to a stream: the manifest
// lands before the chunks it counts, and the chunks land in any order. A receiver must wait for
// them — saying what it waits for — and still deliver the stream byte for byte.
describe('a receiver following a copy made by a transfer service', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;

  beforeAll(async () => {
    work = await tempDir('transfer');
  });
  afterAll(() => work.cleanup());

  it('waits for chunks the manifest already counts, in whatever order they arrive', async () => {
    const input = join(work.path, 'input.bin');
    const inputSha = await writeMixedStream(input, 24 * MiB, 3);
    const original = join(work.path, 'original');
    const sent = await run(['send', original, '--chunk-size', '1MiB', '-q', '--', 'cat', input]);
    expect(sent.code, sent.stderr).toBe(0);

    // The copy: the manifest first, no chunks yet.
    const copy = join(work.path, 'copy');
    await mkdir(join(copy, 'chunks'), { recursive: true });
    await copyFile(join(original, 'manifest.json'), join(copy, 'manifest.json'));
    const outPath = join(work.path, 'copy.out');
    const out = await outputFile(outPath);
    // stderr is not a terminal, so the receiver reports only what it waits for (after 2 s).
    const receiver = bucketpipe(['receive', copy, '--poll-interval', '100ms'], { stdoutFile: out.fd });

    await waitFor(
      () => (receiver.stderr().includes('waiting for chunk chunks/000000000000') ? true : undefined),
      15_000,
      'the receiver to say what it waits for',
    );
    // The chunks arrive from the last to the first, each atomically (written aside, then renamed).
    const chunks = (await readdir(join(original, 'chunks')))
      .filter((name) => /^\d{12}$/.test(name))
      .sort()
      .reverse();
    expect(chunks).toHaveLength(24);
    for (const name of chunks) {
      await copyFile(join(original, 'chunks', name), join(copy, 'chunks', `.${name}.part`));
      await rename(join(copy, 'chunks', `.${name}.part`), join(copy, 'chunks', name));
      await sleep(20);
    }
    const received = await receiver.done;
    await out.close();
    expect(received.code, received.stderr).toBe(0);
    expect(await sha256File(outPath)).toBe(inputSha);
  });

  it('gives up on a chunk that never arrives after --missing-chunk-timeout, naming it, with nothing of it written', async () => {
    const input = join(work.path, 'input2.bin');
    await writeMixedStream(input, 4 * MiB, 4);
    const original = join(work.path, 'original2');
    const sent = await run(['send', original, '--chunk-size', '1MiB', '-q', '--', 'cat', input]);
    expect(sent.code, sent.stderr).toBe(0);
    const copy = join(work.path, 'copy2');
    await mkdir(join(copy, 'chunks'), { recursive: true });
    await copyFile(join(original, 'manifest.json'), join(copy, 'manifest.json'));
    for (const name of ['000000000000', '000000000001', '000000000003']) {
      await copyFile(join(original, 'chunks', name), join(copy, 'chunks', name));
    }
    const outPath = join(work.path, 'copy2.out');
    const out = await outputFile(outPath);
    const started = performance.now();
    const received = await run(['receive', copy, '--missing-chunk-timeout', '3s', '--poll-interval', '100ms', '-q'], {
      stdoutFile: out.fd,
    });
    const seconds = (performance.now() - started) / 1000;
    await out.close();
    expect(received.code).toBe(5);
    expect(errorLine(received.stderr)).toMatch(/chunk chunks\/000000000002 is missing .*waited 3\.\d s.*BP_CHUNK_MISSING/);
    // The two chunks before it, nothing of it or after it.
    expect((await stat(outPath)).size).toBe(2 * MiB);
    expect(seconds).toBeGreaterThanOrEqual(3);
    expect(seconds).toBeLessThan(15);
  });
});
