import type { Manifest, ReceiverCursor } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import { LiveRates, renderInspect, WATCH_WINDOW_MS, watchFinished } from './inspect.js';

const STREAM = '0f8e2b7a-3c4d-4e5f-8a9b-1c2d3e4f5a6b';
const T0 = Date.parse('2026-11-25T10:00:00.000Z');
const MB = 1_000_000;
const CHUNK = 1_000_000;

function manifest(patch: Partial<Manifest> = {}): Manifest {
  const at = new Date(T0).toISOString();
  return {
    format: 'bucketpipe.manifest',
    version: 1,
    streamId: STREAM,
    createdAt: at,
    updatedAt: at,
    chunkSize: CHUNK,
    codec: 'zstd',
    level: 1,
    state: 'sending',
    watermark: 0,
    rawBytes: 0,
    storedBytes: 0,
    sender: { id: 'src:1', host: 'src', pid: 1, startedAt: at, heartbeatAt: at },
    ...patch,
  };
}

function cursor(receiverId: string, rawBytes: number, patch: Partial<ReceiverCursor> = {}): ReceiverCursor {
  const at = new Date(T0).toISOString();
  return {
    format: 'bucketpipe.receiver',
    version: 1,
    receiverId,
    streamId: STREAM,
    host: 'dst',
    pid: 2,
    startedAt: at,
    updatedAt: at,
    position: rawBytes / CHUNK,
    rawBytes,
    state: 'receiving',
    ...patch,
  };
}

const at = (chunks: number, patch: Partial<Manifest> = {}) =>
  manifest({ watermark: chunks, rawBytes: chunks * CHUNK, storedBytes: (chunks * CHUNK) / 2, ...patch });

describe('inspect --watch rendering', () => {
  it('says "measuring" at the first refresh, then the sender rate, each receiver rate, lag, and an unknown ETA while sending', () => {
    const rates = new LiveRates();
    rates.record(T0, at(10), [cursor('slow', 2 * MB), cursor('fast', 8 * MB)]);
    const first = renderInspect('s3://b/p', at(10), [cursor('slow', 2 * MB)], T0, rates);
    expect(first).toMatch(/sender rate\s+measuring…/);
    expect(first).toMatch(/rate measuring… · lag 8 chunks \(7\.63 MiB\) · ETA unknown \(the stream is still being sent\)/);

    // 2 s later: the sender stored 20 MB more (10 MB/s), "slow" wrote 4 MB (2 MB/s), "fast" 12 MB (6 MB/s).
    const m = at(30);
    const receivers = [cursor('slow', 6 * MB), cursor('fast', 20 * MB)];
    rates.record(T0 + 2000, m, receivers);
    const text = renderInspect('s3://b/p', m, receivers, T0 + 2000, rates);
    expect(text).toMatch(/sender rate\s+10\.0 MB\/s raw; ETA unknown/);
    expect(text).toMatch(/receiver slow\s+receiving: chunk 6\/30.*\n\s+2\.0 MB\/s · lag 24 chunks \(22\.9 MiB\) · ETA unknown/);
    expect(text).toMatch(/receiver fast\s+receiving: chunk 20\/30.*\n\s+6\.0 MB\/s · lag 10 chunks \(9\.54 MiB\) · ETA unknown/);
  });

  it('gives an ETA once the stream is complete (its total known), done for a receiver that finished', () => {
    const rates = new LiveRates();
    const final = { chunks: 100, rawBytes: 100 * MB, digest: 'a'.repeat(64) };
    const m = at(100, { state: 'complete', final });
    rates.record(T0, m, [cursor('r', 40 * MB), cursor('d', 100 * MB, { state: 'done' })]);
    const receivers = [cursor('r', 50 * MB), cursor('d', 100 * MB, { state: 'done' })];
    rates.record(T0 + 5000, m, receivers);
    const text = renderInspect('s3://b/p', m, receivers, T0 + 5000, rates);
    expect(text).toMatch(/sender rate\s+done/);
    // 50 MB left at 2 MB/s.
    expect(text).toMatch(/2\.0 MB\/s · lag 50 chunks \(47\.7 MiB\) · ETA 25s/);
    expect(text).toMatch(/lag 0 chunks \(0 B\); done/);
  });

  it('measures over the last window only, and restarts the series of a receiver that went back', () => {
    const rates = new LiveRates();
    const m = at(1);
    rates.record(T0, m, [cursor('r', 0)]);
    rates.record(T0 + 1000, m, [cursor('r', 100 * MB)]); // a burst, then it slows down
    for (let t = 2000; t <= WATCH_WINDOW_MS + 4000; t += 1000) rates.record(T0 + t, m, [cursor('r', 100 * MB + (t - 1000) * 1000)]);
    expect(rates.receiver('r')).toBeCloseTo(1 * MB, -3); // the burst has left the window
    rates.record(T0 + 20_000, m, [cursor('r', 5 * MB)]); // restarted from an earlier position
    expect(rates.receiver('r')).toBeNull();
    expect(rates.sender()).toBe(0);
  });

  it('ends when the stream is complete and every receiver of it is done, or aborted', () => {
    const complete = at(3, { state: 'complete', final: { chunks: 3, rawBytes: 3 * MB, digest: 'b'.repeat(64) } });
    expect(watchFinished(at(3), [])).toBe(false);
    expect(watchFinished(complete, [])).toBe(true);
    expect(watchFinished(complete, [cursor('r', MB)])).toBe(false);
    expect(watchFinished(complete, [cursor('r', 3 * MB, { state: 'done' }), cursor('old', 0, { streamId: 'another' })])).toBe(true);
    expect(watchFinished(complete, [cursor('r', MB, { state: 'failed' })])).toBe(false);
    expect(watchFinished(at(3, { state: 'aborted' }), [cursor('r', MB)])).toBe(true);
  });

  it("gives percent and an ETA by the sender's estimate while sending, and says when the stream outgrew it", () => {
    const rates = new LiveRates();
    const estimate = { expectedRawBytes: 100 * MB };
    rates.record(T0, at(10, estimate), [cursor('r', 5 * MB)]);
    const m = at(30, estimate); // the sender went from 10 MB to 30 MB in 2 s: 10 MB/s
    const receivers = [cursor('r', 9 * MB)]; // 2 MB/s
    rates.record(T0 + 2000, m, receivers);
    const text = renderInspect('s3://b/p', m, receivers, T0 + 2000, rates);
    expect(text).toMatch(/^expected\s+~95\.4 MiB \(the sender's estimate; 30% stored so far\)$/m);
    // 70 MB left at 10 MB/s; the receiver: 91 MB left at 2 MB/s.
    expect(text).toMatch(/sender rate\s+10\.0 MB\/s raw; 30% of ~95\.4 MiB, ETA ~7s \(by the sender's estimate\)/);
    expect(text).toMatch(/2\.0 MB\/s · lag 21 chunks \(20\.0 MiB\) · 9% of ~95\.4 MiB, ETA ~46s \(by the sender's estimate\)/);

    const beyond = at(120, estimate);
    rates.record(T0 + 4000, beyond, receivers);
    const later = renderInspect('s3://b/p', beyond, receivers, T0 + 4000, rates);
    expect(later).toMatch(/^expected\s+~95\.4 MiB \(the sender's estimate; more than that is stored already\)$/m);
    expect(later).toMatch(/sender rate\s+[\d.]+ MB\/s raw; 99% of ~95\.4 MiB: beyond the sender's estimate, ETA unknown/);
  });

  it('leaves the plain inspect as it was', () => {
    const text = renderInspect('s3://b/p', at(3), [cursor('r', MB)], T0);
    expect(text).not.toMatch(/rate|ETA/);
  });
});
