import { copyFile, open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bucketpipe,
  errorLine,
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

const chunkSize = 1 * MiB;
const streamBytes = 24 * MiB + 4321; // 25 chunks
const sendArgs = ['--chunk-size', '1MiB', '--manifest-interval', '200ms'];

describe('a sender killed with SIGKILL, resumed with send --takeover', () => {
  const suite = mixedInputSuite('resume', streamBytes, 11);

  it('takes over at once, without waiting for --stale-after, when the dead sender ran on this host and its process is gone', async () => {
    const stream = join(suite.dir, 'same-host');
    const manifestPath = join(stream, 'manifest.json');
    const first = bucketpipe([
      'send',
      stream,
      ...sendArgs,
      '--',
      process.execPath,
      join(fixtures, 'paced-cat.mjs'),
      suite.input,
      String(8 * MiB),
    ]);
    await waitFor(
      async () => ((await readJson(manifestPath).catch(() => ({ watermark: 0 }))).watermark as number) >= 3 || undefined,
      20_000,
      'a watermark of 3 chunks',
    );
    const sender = (await readJson(manifestPath)).sender as { pid: number; process?: { bootId: string; startTime: string } };
    expect(sender.pid).toBe(first.child.pid);
    expect(sender.process?.bootId).toMatch(/^[0-9a-f-]{36}$/);
    expect(sender.process?.startTime).toMatch(/^\d+$/);
    first.child.kill('SIGKILL');
    await first.done;
    // The heartbeat is fresh (well under the default 60 s --stale-after), but its process is gone.
    const resumed = await run(['send', stream, ...sendArgs, '--takeover', '--', 'cat', suite.input]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(summaryOf(resumed.stderr)).toMatchObject({ state: 'complete', chunks: 25, tookOver: { state: 'sending' } });
    expect((summaryOf(resumed.stderr).tookOver as { heartbeatAgeSeconds: number }).heartbeatAgeSeconds).toBeLessThan(60);
  });

  it('verifies what is stored against the source, uploads the rest, and a receiver gets identical bytes', async () => {
    const stream = join(suite.dir, 'stream');
    const manifestPath = join(stream, 'manifest.json');
    // About 8 MiB/s: three seconds for the whole stream.
    const first = bucketpipe([
      'send',
      stream,
      ...sendArgs,
      '--',
      process.execPath,
      join(fixtures, 'paced-cat.mjs'),
      suite.input,
      String(8 * MiB),
    ]);
    await waitFor(
      async () => ((await readJson(manifestPath).catch(() => ({ watermark: 0 }))).watermark as number) >= 5 || undefined,
      20_000,
      'a watermark of 5 chunks',
    );

    // While it is alive, a takeover is refused, naming it.
    const refused = await run(['send', stream, ...sendArgs, '--takeover', '--stale-after', '10s', '--', 'cat', suite.input]);
    expect(refused.code, refused.stderr).toBe(4);
    expect(errorLine(refused.stderr)).toMatch(
      new RegExp(
        `has a live sender \\(.*, pid ${first.child.pid} on .*, heartbeat [\\d.]+s ago, less than the 10s --stale-after limit\\).*BP_SENDER_LIVE`,
      ),
    );

    first.child.kill('SIGKILL');
    expect((await first.done).signal).toBe('SIGKILL');
    const dead = await readJson(manifestPath);
    const watermark = dead.watermark as number;
    expect(dead.state).toBe('sending');
    expect(watermark).toBeGreaterThanOrEqual(5);
    expect(watermark).toBeLessThan(25);
    const deadManifest = await readFile(manifestPath);

    // Another source (one byte differs in chunk 2): refused, naming the chunk; the stream is untouched.
    const other = join(suite.dir, 'other.bin');
    await copyFile(suite.input, other);
    const handle = await open(other, 'r+');
    await handle.write(Buffer.from([0xff]), 0, 1, 2 * chunkSize + 1000);
    await handle.close();
    await new Promise((r) => setTimeout(r, 1100)); // the heartbeat is older than --stale-after now
    const changed = await run(['send', stream, ...sendArgs, '--takeover', '--stale-after', '1s', '--', 'cat', other]);
    expect(changed.code, changed.stderr).toBe(5);
    expect(errorLine(changed.stderr)).toMatch(
      /the source does not match the stored stream at chunk chunks\/000000000002: its raw SHA-256 differs .*nothing was written .*\[BP_SOURCE_CHANGED\]/,
    );
    expect((await readFile(manifestPath)).equals(deadManifest), 'the manifest was not touched').toBe(true);

    // The same source: resumed.
    const chunkFiles = async () => (await readdir(join(stream, 'chunks'))).filter((name) => !name.startsWith('.'));
    const resumeStarted = Date.now();
    const resumed = await run(['send', stream, ...sendArgs, '--takeover', '--stale-after', '1s', '--', 'cat', suite.input]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`verifying it against the ${watermark} chunks already stored`);
    const summary = summaryOf(resumed.stderr);
    expect(summary).toMatchObject({
      streamId: dead.streamId,
      state: 'complete',
      chunks: 25,
      rawBytes: streamBytes,
      resumedFrom: watermark,
      chunksVerified: watermark,
      tookOver: { state: 'sending', sender: (dead.sender as { id: string }).id },
      digest: await streamDigestOfFile(suite.input, chunkSize),
    });
    // Chunks below the watermark were only read (the manifest, then one 128-byte header each) and
    // kept; so were those the dead sender had stored beyond it (one header each); the rest was
    // written by the resumed sender.
    const reused = summary.chunksReused as number;
    expect((summary.chunksUploaded as number) + reused).toBe(25 - watermark);
    expect((summary.requests as Record<string, number>).get).toBe(1 + watermark + reused);
    const names = await chunkFiles();
    expect(names).toHaveLength(25);
    let keptBeyond = 0;
    for (const [index, name] of names.entries()) {
      const modified = (await stat(join(stream, 'chunks', name))).mtimeMs;
      if (index < watermark) expect(modified, `chunk ${index} kept`).toBeLessThan(resumeStarted);
      else if (modified < resumeStarted) keptBeyond++;
    }
    expect(keptBeyond, 'the chunks beyond the watermark that were kept are the ones reused').toBe(reused);

    const outPath = join(suite.dir, 'received.bin');
    const out = await outputFile(outPath);
    const received = await run(['receive', stream, '--poll-interval', '100ms'], { stdoutFile: out.fd });
    await out.close();
    expect(received.code, received.stderr).toBe(0);
    expect(await sha256File(outPath)).toBe(suite.sha256);
  });
});
