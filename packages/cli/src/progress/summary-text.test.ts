import { describe, expect, it } from 'vitest';
import { describeSummary } from './summary-text.js';

const digest = 'ab'.repeat(32);

describe('describeSummary', () => {
  it('send: bytes, time and rate, chunks, stored size and ratio, digest', () => {
    const text = describeSummary({
      command: 'send',
      state: 'complete',
      chunks: 64,
      rawBytes: 256 * 1024 * 1024,
      storedBytes: 99 * 1024 * 1024,
      ratio: 2.586,
      seconds: 2.104,
      MBps: 127.6,
      digest,
    });
    expect(text).toBe(`send complete: 256.0 MiB in 2.1s (127.6 MB/s), 64 chunks, stored 99.0 MiB (2.59x); digest ${digest}`);
  });

  it('send after a takeover, and long runs in minutes and hours', () => {
    const text = describeSummary({
      command: 'send',
      state: 'complete',
      chunks: 10,
      resumedFrom: 4,
      chunksUploaded: 6,
      seconds: 4000,
      rawBytes: 10,
    });
    expect(text).toMatch(/in 1h06m, 10 chunks, 4 of them verified against the source and 6 uploaded/);
  });

  it('receive, relay, verify, rm, ls', () => {
    expect(
      describeSummary({
        command: 'receive',
        state: 'complete',
        sink: 'stdout',
        chunks: 1,
        rawBytes: 5,
        seconds: 0.01,
        MBps: 0,
        resumedFrom: 0,
        chunksDeleted: 1,
        digest,
      }),
    ).toBe(`receive complete: 5 B into stdout in 0.0s (0.0 MB/s), 1 chunk, resumed at chunk 0, 1 deleted from the store; digest ${digest}`);
    expect(
      describeSummary({
        command: 'relay',
        state: 'complete',
        chunks: 8,
        chunksCopied: 3,
        storedBytesCopied: 2048,
        from: 's3://a/p',
        to: 'gs://b/p',
        seconds: 1,
        MBps: 0,
      }),
    ).toBe('relay complete: 3 of 8 chunks copied (2.00 KiB stored) in 1.0s (0.0 MB/s), s3://a/p to gs://b/p');
    expect(
      describeSummary({
        command: 'relay',
        seriesId: 'id',
        streams: 12,
        streamsRelayed: 3,
        chunksCopied: 40,
        storedBytesCopied: 4096,
        from: 's3://a/series',
        to: 'gs://b/series',
        seconds: 1,
        MBps: 0,
      }),
    ).toBe(
      'relay complete: series of 12 streams (3 relayed by this run), 40 chunks copied (4.00 KiB stored) in 1.0s (0.0 MB/s), s3://a/series to gs://b/series',
    );
    expect(
      describeSummary({ command: 'verify', verdict: 'failed', chunks: 9, problems: 2, rawBytes: 9, seconds: 1, MBps: 0, digest: null }),
    ).toBe('verify FAILED: 9 chunks, 9 B raw in 1.0s (0.0 MB/s), 2 problems');
    expect(describeSummary({ command: 'rm', dryRun: true, objects: 6, bytes: 1024, seconds: 0.05 })).toBe(
      'rm: would delete 6 objects (1.00 KiB) in 0.1s',
    );
    expect(describeSummary({ command: 'ls', streams: 1, location: 'file:///srv/bp' })).toBe('ls: 1 stream at file:///srv/bp');
    expect(describeSummary({ command: 'frob' })).toBe('frob done');
  });
});
