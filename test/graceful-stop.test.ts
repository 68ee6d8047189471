import { access, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bucketpipe,
  errorLine,
  fixtures,
  MiB,
  mixedInputSuite,
  readJson,
  sha256File,
  streamDigestOfFile,
  summaryOf,
  waitFor,
} from './helpers.js';

const chunkSize = 1 * MiB;
const streamBytes = 24 * MiB + 4321; // 25 chunks
const chunks = 25;
const rate = String(4 * MiB); // about six seconds for the whole stream: stopped midway, not at the end
const sendArgs = ['--chunk-size', '1MiB', '--manifest-interval', '200ms'];
const receiveArgs = ['--poll-interval', '100ms', '--receiver-id', 'stopper'];
/** How long a stopped process may take to exit (it measured well under a second). */
const exitBoundMs = 5_000;

const sizeOf = async (path: string) => (await stat(path).catch(() => ({ size: 0 }))).size;
const chunkName = (index: number) => `chunks/${String(index).padStart(12, '0')}`;

/** Sends the signal and resolves with the exit and how long it took. */
async function stop(running: ReturnType<typeof bucketpipe>, signal: NodeJS.Signals) {
  const sent = performance.now();
  running.child.kill(signal);
  const finished = await running.done;
  return { ...finished, ms: performance.now() - sent };
}

describe('graceful stop: SIGTERM to a live sender, SIGINT to a live receiver (--output FILE)', () => {
  const suite = mixedInputSuite('graceful-stop', streamBytes, 31);

  it('each exits 130 promptly, leaves the manifest / cursor consistent, and the same commands resume to a byte-identical file', async () => {
    const stream = join(suite.dir, 'stream');
    const manifestPath = join(stream, 'manifest.json');
    const cursorPath = join(stream, 'receivers/stopper.json');
    const output = join(suite.dir, 'received.bin');
    const pacedSend = (more: string[]) =>
      bucketpipe(['send', stream, ...sendArgs, ...more, '--', process.execPath, join(fixtures, 'paced-cat.mjs'), suite.input, rate]);

    // 1. A live send followed by a receiver into a file; SIGTERM the sender midway.
    const sender = pacedSend([]);
    const firstReceiver = bucketpipe(['receive', stream, ...receiveArgs, '--output', output]);
    await waitFor(
      async () => ((await readJson(manifestPath).catch(() => ({ watermark: 0 }))).watermark as number) >= 6 || undefined,
      30_000,
      'a watermark of 6 chunks',
    );
    const stopped = await stop(sender, 'SIGTERM');
    console.log(`graceful-stop: sender exited ${stopped.code} ${stopped.ms.toFixed(0)} ms after SIGTERM`);
    expect(stopped.signal, stopped.stderr).toBeNull();
    expect(stopped.code, stopped.stderr).toBe(130);
    expect(stopped.ms).toBeLessThan(exitBoundMs);
    expect(errorLine(stopped.stderr)).toMatch(/interrupted by SIGTERM.*\[BP_INTERRUPTED\]/);

    // The manifest: valid JSON, marked aborted (FORMAT.md §4.2 "interrupted (best effort)"), with a
    // watermark short of the end whose every chunk is stored.
    const aborted = await readJson(manifestPath);
    const watermark = aborted.watermark as number;
    expect(aborted).toMatchObject({ state: 'aborted', abortReason: 'interrupted by SIGTERM' });
    expect(watermark).toBeGreaterThanOrEqual(6);
    expect(watermark).toBeLessThan(chunks);
    expect(aborted.rawBytes).toBe(watermark * chunkSize);
    for (let index = 0; index < watermark; index++) {
      await expect(access(join(stream, chunkName(index))), `chunk ${index} below the watermark`).resolves.toBeUndefined();
    }

    // The receiver following it stops on the aborted stream (exit 6), the sink stopped before its end.
    const firstReceived = await firstReceiver.done;
    expect(firstReceived.code, firstReceived.stderr).toBe(6);
    expect(errorLine(firstReceived.stderr)).toContain('[BP_STREAM_ABORTED]');
    expect(await sizeOf(output)).toBeLessThanOrEqual(watermark * chunkSize);

    // 2. The same command with --takeover: an aborted stream is taken over at once (no --stale-after wait).
    const takeoverStarted = performance.now();
    const resumedSender = pacedSend(['--takeover']);
    // A receiver started while the manifest still says aborted would stop at once (exit 6): wait for the claim.
    await waitFor(
      async () => ((await readJson(manifestPath).catch(() => ({ state: undefined }))).state === 'sending' ? true : undefined),
      30_000,
      'the takeover to claim the stream',
    );
    const claimSeconds = (performance.now() - takeoverStarted) / 1000;
    console.log(`graceful-stop: takeover claimed the aborted stream ${claimSeconds.toFixed(2)} s after it started`);
    // 3. The receiver again, into the same file; SIGINT it midway while the stream is live.
    const secondReceiver = bucketpipe(['receive', stream, ...receiveArgs, '--output', output]);
    const heldBefore = await sizeOf(output);
    await waitFor(
      async () => ((await sizeOf(output)) >= Math.max(heldBefore, (watermark + 4) * chunkSize) ? true : undefined),
      30_000,
      `the file to grow past chunk ${watermark + 4}`,
    );
    const interrupted = await stop(secondReceiver, 'SIGINT');
    console.log(`graceful-stop: receiver exited ${interrupted.code} ${interrupted.ms.toFixed(0)} ms after SIGINT`);
    expect(interrupted.signal, interrupted.stderr).toBeNull();
    expect(interrupted.code, interrupted.stderr).toBe(130);
    expect(interrupted.ms).toBeLessThan(exitBoundMs);
    expect(errorLine(interrupted.stderr)).toMatch(/interrupted by SIGINT.*\[BP_INTERRUPTED\]/);

    // Its cursor: valid, of this stream, never ahead of what the file holds; the file is a prefix of the stream.
    const held = await sizeOf(output);
    const cursor = await readJson(cursorPath);
    console.log(`graceful-stop: cursor after SIGINT: ${JSON.stringify(cursor)}; file holds ${held} bytes`);
    expect(cursor).toMatchObject({ streamId: aborted.streamId, state: 'failed', error: 'interrupted by SIGINT' });
    expect(cursor.position as number).toBeLessThanOrEqual(Math.floor(held / chunkSize));
    expect(cursor.rawBytes as number).toBeLessThanOrEqual(held);
    expect(held).toBeLessThan(streamBytes);
    const prefix = (await readFile(suite.input)).subarray(0, held);
    expect((await readFile(output)).equals(prefix), 'the file holds a prefix of the stream').toBe(true);

    // 4. The same receive command once more completes the file, byte-identical.
    const thirdReceiver = bucketpipe(['receive', stream, ...receiveArgs, '--output', output]);
    const [resumedSent, lastReceived] = await Promise.all([resumedSender.done, thirdReceiver.done]);
    const takeoverSeconds = (performance.now() - takeoverStarted) / 1000;
    expect(resumedSent.code, resumedSent.stderr).toBe(0);
    expect(resumedSent.stderr).toContain(`verifying it against the ${watermark} chunks already stored`);
    const sendSummary = summaryOf(resumedSent.stderr);
    console.log(`graceful-stop: takeover from chunk ${watermark} completed in ${takeoverSeconds.toFixed(1)} s`);
    expect(sendSummary).toMatchObject({
      streamId: aborted.streamId,
      state: 'complete',
      chunks,
      rawBytes: streamBytes,
      resumedFrom: watermark,
      tookOver: { state: 'aborted' },
      digest: await streamDigestOfFile(suite.input, chunkSize),
    });
    expect((sendSummary.chunksUploaded as number) + (sendSummary.chunksReused as number)).toBe(chunks - watermark);
    expect(lastReceived.code, lastReceived.stderr).toBe(0);
    expect(summaryOf(lastReceived.stderr)).toMatchObject({ state: 'complete', resumedFrom: Math.floor(held / chunkSize) });
    expect(await sha256File(output), 'no byte duplicated or dropped').toBe(suite.sha256);
    expect(await readJson(cursorPath)).toMatchObject({ state: 'done', position: chunks, rawBytes: streamBytes });
  });
});
